#!/usr/bin/env bash
# The GPU benchmarks in one command, through the existing bench scripts with flags (no code of its own):
#   1. XTTS-v2 first chunk (and RTF) at 1, 4 and 8 concurrent streams        scripts/bench_tts.py
#   2. Whisper under load: batching on and off at 1, 8 and 24 sessions       scripts/bench_stt.py
#   3. voice-to-voice at N = 1, 8 and 24 callers, chat and call mode         scripts/bench.py
#   4. the phone beside /ws call mode: voice-to-voice at N = 1 and 8, and    scripts/bench_phone.py
#      barge-in onset -> clear / user_interrupt (issue 22's 300 ms: on a CPU a Whisper pass is the floor)
# Steps 2 to 4 run serve_config.gpu.yaml as an operator does (`ray start --head` with the profile's
# `# machine:` resources, then `serve deploy`: harness/server.py start_deployed). Each step writes JSON (and a
# PNG where the script plots) into docs/bench/gpu_<step>_<commit>.json, beside gpu_env_<commit>.json (GPU,
# driver, what torch and CTranslate2 see); the numbers go into docs/benchmarks.md by hand.
#
#   scripts/bench_gpu.sh              # on a GPU box set up with a CUDA torch and scripts/setup.sh --with-xtts
#   scripts/bench_gpu.sh --dry-run    # the same steps with tiny N and the profile shrunk to one replica each,
#                                     # on any machine (CPU here): the first GPU run must not die on a typo;
#                                     # writes into bench_results/ (not committed)
#
# A step that fails is reported and the next one still runs; the exit status is the number of failed steps.
# Needs the project installed (docs/deploying.md#benchmarking-a-gpu-box): it downloads nothing.
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-.venv/bin/python}
PROFILE=${VOI_GPU_PROFILE:-serve_config.gpu.yaml}
tag=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$dry" = 1 ]; then
  out=bench_results/gpu_dry_run
  tts=(--levels 1 --runs 1 --xtts-runs 1 --xtts-audio-s 0.5)
  stt=(--quick --levels 1 --serve-config "$PROFILE" --shrink)
  v2v=(--levels 1 --turns 1 --modes chat --serve-config "$PROFILE" --shrink)
  phone=(--levels 1 --turns 1 --barge-ins 1 --serve-config "$PROFILE" --shrink)
else
  out=${VOI_BENCH_DIR:-docs/bench}
  tts=(--levels 1 4 8 --xtts-runs 5 --xtts-audio-s 4)
  stt=(--levels 1,8,24 --serve-config "$PROFILE")
  v2v=(--levels 1,8,24 --turns 4 --modes chat,call --serve-config "$PROFILE")
  phone=(--levels 1,8 --turns 3 --barge-ins 8 --serve-config "$PROFILE")
fi
mkdir -p "$out"

# What this machine is, and whether the models will really run on the GPU: `device: auto` quietly falls back
# to the CPU when CTranslate2 (Whisper) or torch (XTTS) cannot see CUDA (e.g. a CUDA runtime it was not built
# for), and a GPU run on the CPU would be numbers about the wrong thing.
"$PY" - "$out/gpu_env_$tag.json" "$dry" <<'EOF'
import json, platform, shutil, subprocess, sys

env = {"platform": platform.platform(), "python": sys.version.split()[0], "dry_run": sys.argv[2] == "1"}
if shutil.which("nvidia-smi"):
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
try:
    import ctranslate2
    env["ctranslate2"] = ctranslate2.__version__
    env["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
except Exception as exc:  # noqa: BLE001  (reported, not fatal: the env file says what is missing)
    env["ctranslate2"] = f"not usable: {exc}"
try:
    import torch
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.cuda.is_available() and torch.cuda.get_device_name(0)
except Exception as exc:  # noqa: BLE001
    env["torch"] = f"not usable: {exc}"
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(json.dumps(env, indent=2))
if sys.argv[2] != "1" and not (env.get("ctranslate2_cuda_devices") and env.get("torch_cuda")):
    sys.exit("bench_gpu: Whisper (CTranslate2) or XTTS (torch) sees no CUDA device here: the GPU numbers would "
             "be CPU numbers. Fix the install (docs/deploying.md#benchmarking-a-gpu-box) or use --dry-run.")
EOF
[ $? -eq 0 ] || exit 1

failed=0
step() {  # step NAME COMMAND...: runs one bench, its output also in $out/gpu_NAME_$tag.log
  local name=$1; shift
  echo "== bench_gpu: $name: $*"
  if "$@" 2>&1 | tee "$out/gpu_${name}_$tag.log"; then
    echo "== bench_gpu: $name: done"
  else
    echo "== bench_gpu: $name: FAILED (log: $out/gpu_${name}_$tag.log)"
    failed=$((failed + 1))
  fi
}
export PYTHONUNBUFFERED=1
step tts "$PY" scripts/bench_tts.py "${tts[@]}" --out "$out/gpu_tts_$tag.json"
step stt "$PY" scripts/bench_stt.py "${stt[@]}" --out "$out/gpu_stt_$tag.json"
step v2v "$PY" scripts/bench.py "${v2v[@]}" --out "$out/gpu_v2v_$tag.json"
step phone "$PY" scripts/bench_phone.py "${phone[@]}" --out "$out/gpu_phone_$tag.json"
echo "== bench_gpu: $failed step(s) failed; results in $out/"
exit "$failed"
