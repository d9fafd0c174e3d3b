"""Failures of the OpenAI endpoint as a client sees them: a refusal's own reason, never a remote traceback."""

from ray.exceptions import RayTaskError

from deployments.openai_http import failure_response, refusal_reason


def _remote(cause: BaseException) -> RayTaskError:
    """What a caller gets when a Ray task raised ``cause``: its text carries the remote traceback."""
    traceback_text = 'Traceback (most recent call last):\n  File "/work/llm/local_model.py", line 1\nValueError: x'
    return RayTaskError("complete", traceback_text, cause, pid=4242, ip="10.0.0.7", actor_id="abc123")


def test_a_remote_refusal_shows_only_its_reason():
    exc = _remote(ValueError("messages: must be a non-empty list")).as_instanceof_cause()
    assert "File \"/work" in str(exc) and "pid=4242" in str(exc)  # what used to reach the client
    assert refusal_reason(exc) == "messages: must be a non-empty list"
    response = failure_response(exc, "the completion")
    assert response.status_code == 400 and b"File" not in response.body and b"10.0.0.7" not in response.body


def test_anything_else_is_a_generic_500():
    response = failure_response(_remote(RuntimeError("llama.cpp crashed at /work/x")).as_instanceof_cause(), "the completion")
    assert response.status_code == 500 and b"/work" not in response.body and b"crashed" not in response.body
    assert failure_response(KeyError("k"), "the completion").status_code == 500
