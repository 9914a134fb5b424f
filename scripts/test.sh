#!/usr/bin/env bash
# The test command of harman (README): installs what the tests need, then runs them all.
#   - moto's S3-compatible server (PyPI), into a virtualenv under target/, for the tests that
#     read from and write to s3:// on 127.0.0.1 (each test starts its own server on a free port);
#   - Hugging Face `tokenizers` (PyPI) into the same virtualenv, for the test that loads a
#     tokenizer.json harman trained and compares its ids with harman's;
#   - NVRTC 13.0 (PyPI's nvidia-cuda-nvrtc, no GPU needed), so the test that compiles every
#     CUDA kernel for sm_90 with spills as errors runs here (HARMAN_REQUIRE_NVRTC=1 makes its
#     absence a failure, not a skip);
#   - a C++ compiler (apt's g++ where `c++` is missing) for the kernel simulator;
#   - then `cargo test` over the whole workspace (unit tests + end-to-end tests of the binary);
#   - then, where no NVIDIA GPU answers, the GPU tests (every kernel against the CPU
#     reference, the training runs against the CPU backend) once more on the kernel
#     simulator (HARMAN_CUDA_SIM=1: the CUDA sources compiled for the host, warps emulated),
#     so the kernels' logic is tested on every run; their speed and the real PTX need a GPU.
# Extra arguments go to cargo test (e.g. `scripts/test.sh s3` runs the tests matching "s3").
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${HARMAN_TEST_VENV:-$PWD/target/test-venv}"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "installing moto[server] into $VENV"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    # Debian's python3 ships venv separately.
    apt-get update -qq && apt-get install -y -qq python3-venv
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.2.5'
fi
if ! "$VENV/bin/python" -c 'import tokenizers' >/dev/null 2>&1; then
  echo "installing tokenizers into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'tokenizers==0.23.3'
fi
if ! "$VENV/bin/python" -c 'import nvidia.cu13' >/dev/null 2>&1; then
  echo "installing NVRTC 13.0 into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps 'nvidia-cuda-nvrtc==13.0.88'
fi
CU13="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
export LD_LIBRARY_PATH="$CU13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
  echo "installing g++ (the kernel simulator's compiler)"
  apt-get update -qq && apt-get install -y -qq g++
fi
export HARMAN_REQUIRE_NVRTC=1
export HARMAN_MOTO_SERVER="$VENV/bin/moto_server"
export HARMAN_TEST_PYTHON="$VENV/bin/python"

cargo test --workspace --locked "$@"

if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no NVIDIA GPU: the GPU tests again, on the kernel simulator"
  HARMAN_CUDA_SIM=1 cargo test --locked -p harman-kernels --test cuda_ops "$@"
  HARMAN_CUDA_SIM=1 cargo test --locked -p harman-train --test cuda "$@"
  HARMAN_CUDA_SIM=1 cargo test --locked -p harman-eval --test reference "$@"
  if [ $# -eq 0 ]; then
    # One training step's gradients against the CPU with the warpgroup-MMA attention (heads
    # of 64 and of 128).
    HARMAN_CUDA_SIM=1 HARMAN_ATTENTION=wgmma \
      cargo test --locked -p harman-train --test cuda -- one_step_matches_the_cpu_backend \
      a_model_with_heads_of_128_matches_the_cpu_backend
  fi
fi
