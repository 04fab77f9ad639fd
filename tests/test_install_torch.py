"""tools/install_torch.sh picks the torch build that fits the machine (dry runs only)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "install_torch.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _choice(tmp_path, nvidia_smi=None, **env):
    """Run the script's dry run with PATH holding only a fake nvidia-smi (or none)."""
    bin_dir = tmp_path / f"bin{len(list(tmp_path.iterdir()))}"
    bin_dir.mkdir()
    for tool in ("head", "tr", "mktemp", "rm", "uname"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text("#!/bin/sh\n" + nvidia_smi + "\n")
        fake.chmod(0o755)
    environ = {"PATH": str(bin_dir), **env}
    done = subprocess.run([shutil.which("bash"), str(SCRIPT), "--dry-run", sys.executable],
                          env=environ, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout + done.stderr


def test_cpu_build_without_nvidia_smi(tmp_path):
    rc, out = _choice(tmp_path)
    assert rc == 0, out
    assert "CPU build of torch 2.13.0 (no NVIDIA GPU visible: nvidia-smi not found)" in out
    assert "TORCH_BUILD=cuda" in out


def test_cpu_build_when_nvidia_smi_fails(tmp_path):
    rc, out = _choice(tmp_path, 'echo "NVIDIA-SMI has failed" >&2; exit 9')
    assert rc == 0, out
    assert "CPU build" in out and "nvidia-smi fails" in out


def test_cuda_build_when_a_gpu_is_listed(tmp_path):
    rc, out = _choice(tmp_path, 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)"')
    assert rc == 0, out
    assert "CUDA build of torch 2.13.0 (nvidia-smi sees GPU 0: NVIDIA H100 80GB HBM3)" in out
    assert "TORCH_BUILD=cpu" in out


def test_override_and_bad_value(tmp_path):
    rc, out = _choice(tmp_path, 'echo "GPU 0: NVIDIA H100"', TORCH_BUILD="cpu")
    assert rc == 0 and "CPU build of torch 2.13.0 (TORCH_BUILD=cpu)" in out
    rc, out = _choice(tmp_path, TORCH_BUILD="rocm")
    assert rc == 2 and "TORCH_BUILD must be auto, cpu or cuda, got 'rocm'" in out


def test_exact_pip_arguments(tmp_path):
    rc, out = _choice(tmp_path, TORCH_INSTALL="torch==2.13.0 --index-url https://mirror.example")
    assert rc == 0
    assert "installing 'torch==2.13.0 --index-url https://mirror.example' as given" in out
