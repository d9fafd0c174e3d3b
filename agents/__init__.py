"""The conversation brain, Ray-free: agent config, turn-taking, replies."""
