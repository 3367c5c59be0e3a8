"""``mdp doctor``: is every part set up, and what to do when one is not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mdp.config import PROJECT_ROOT, StoreConfig, config_path, load_config


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


def check_blas() -> dict[str, Any]:
    try:
        from mdp.blas import activate_openblas, blas_info

        activate_openblas()
        info = blas_info()
    except Exception as exc:  # report, never crash the doctor
        return _check("blas", False, f"could not inspect BLAS: {exc}")
    name = str(info.get("blas", "unknown"))
    if "reference" in name.lower():
        return _check(
            "blas",
            False,
            f"{name}: mlx-cpu uses its bundled reference BLAS (~30x slower); "
            "install OpenBLAS: sudo apt-get install libopenblas0-pthread (make setup does it as root)",
        )
    return _check("blas", True, ", ".join(f"{k}={v}" for k, v in info.items()))


# What MLX's CUDA backend (mlx-cuda-13) loads: the driver, and CUDA 13 libraries that pip puts under
# site-packages/nvidia/ (mlx's RPATH looks there) or that the system provides.
CUDA_LIBRARIES = ("libcuda.so.1", "libcublasLt.so.13", "libcudnn.so.9", "libnccl.so.2", "libnvrtc.so.13")


def _installed(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def cuda_libraries() -> dict[str, bool]:
    """Whether each library MLX's CUDA backend needs can be loaded (system paths, then pip's nvidia/)."""
    import ctypes
    import site

    folders = [
        lib for base in site.getsitepackages() for lib in Path(base, "nvidia").glob("*/lib") if lib.is_dir()
    ]
    found = {}
    for name in CUDA_LIBRARIES:
        candidates = [name, *(str(folder / name) for folder in folders if (folder / name).exists())]
        ok = False
        for candidate in candidates:
            try:
                ctypes.CDLL(candidate)
                ok = True
                break
            except OSError:
                continue
        found[name] = ok
    return found


def check_mlx() -> dict[str, Any]:
    cuda_wheel = _installed("mlx-cuda-13")
    try:
        import mlx.core as mx
    except Exception as exc:
        fix = "on Linux install mlx[cpu] (make setup does it)"
        if cuda_wheel:
            missing = [name for name, ok in cuda_libraries().items() if not ok]
            fix = (
                f"mlx-cuda-13 {cuda_wheel} is installed; CUDA libraries not loadable: "
                f"{', '.join(missing) or 'none'} (install the NVIDIA driver for CUDA 13, "
                "or point LD_LIBRARY_PATH at nvidia/*/lib)"
            )
        return _check("mlx", False, f"{exc}; {fix}")
    from mdp.encoder import gpu_available, gpu_name

    has_cuda = bool(getattr(mx, "cuda", None) and mx.cuda.is_available())
    gpu = gpu_name() if gpu_available() else ""
    backend = "cuda" if has_cuda else ("metal" if gpu else "cpu")
    detail = (
        f"mlx {mx.__version__}, backend {backend}, default device {mx.default_device()}, GPU: {gpu or 'none'}"
    )
    if cuda_wheel:
        libraries = cuda_libraries()
        detail += ", CUDA libraries: " + ", ".join(
            f"{k} {'found' if v else 'MISSING'}" for k, v in libraries.items()
        )
        if not has_cuda:
            return _check(
                "mlx",
                False,
                f"{detail}; mlx-cuda-13 {cuda_wheel} is installed but MLX has no CUDA backend: mlx-cpu's "
                "libmlx.so replaced it (pip install --force-reinstall --no-deps "
                f"mlx-cuda-13=={mx.__version__}; make setup-cuda does it) "
                "or no GPU or driver is visible (nvidia-smi)",
            )
    return _check("mlx", True, detail)


def check_kernels() -> dict[str, Any]:
    """Which CPU kernels the encoder uses: mdp_kernels (fused C++) or MLX ops, and why."""
    try:
        from mdp.kernels import resolve

        _, status = resolve()
    except Exception as exc:  # e.g. MDP_KERNELS=mdp_kernels when the extension cannot load
        return _check("kernels", False, str(exc))
    if status.name == "mdp_kernels":
        return _check("kernels", True, f"{status.reason}, {status.isa}, {status.threads} threads")
    # MLX ops by choice (MDP_KERNELS=mlx) or off the CPU are fine; a failed build is not.
    return _check("kernels", not status.fallback, status.reason)


def check_model(model_path: Path | None) -> dict[str, Any]:
    from mdp.tokenizer import max_seq_length, resolve_model_path

    try:
        folder = resolve_model_path(model_path)
    except (FileNotFoundError, RuntimeError) as exc:
        return _check("model", False, str(exc))
    weights = folder / "model.safetensors"
    if not weights.exists():
        return _check("model", False, f"{weights} missing: the folder needs safetensors weights")
    return _check("model", True, f"{folder} (max {max_seq_length(folder)} tokens)")


def check_spacy() -> dict[str, Any]:
    try:
        import spacy

        nlp = spacy.load("en_core_web_sm")
        return _check("spacy-model", True, f"en_core_web_sm {nlp.meta.get('version', '?')} loads offline")
    except Exception as exc:
        return _check(
            "spacy-model",
            False,
            f"{exc}; unstructured then extracts NO text from PDFs offline. "
            "Fix: pip install ./packaging/en_core_web_sm (make setup does it)",
        )


def check_tesseract(languages: list[str] | None = None) -> dict[str, Any]:
    """Tesseract reads scanned PDF pages offline; without it they are quarantined with this fix."""
    from mdp.ocr import INSTALL_HINT, find_tesseract, language_package, missing_languages

    tesseract = find_tesseract()
    if tesseract is None:
        detail = f"not found: scanned PDF pages are quarantined instead of OCR'd; {INSTALL_HINT}"
        return _check("tesseract", False, detail)
    wanted = languages or ["eng"]
    missing = missing_languages(tesseract, wanted)
    detail = f"{tesseract.version} at {tesseract.path}, languages: {', '.join(tesseract.languages) or 'none'}"
    if missing:
        packages = " ".join(language_package(code) for code in missing)
        wants = f"[parsing] languages wants {', '.join(missing)}: apt-get install {packages}"
        return _check("tesseract", False, f"{detail}; {wants}")
    return _check("tesseract", True, detail)


def check_store(store_config: StoreConfig) -> dict[str, Any]:
    uri = store_config.uri
    if "://" not in uri:
        path = Path(uri)
        parent = path if path.exists() else path.parent
        while not parent.exists():
            parent = parent.parent
        if not os.access(parent, os.W_OK):
            return _check("store", False, f"{uri} is not writable; set [store] uri or pass --store")
        if not path.exists():  # opening it read-only would refuse; nothing is created here
            return _check("store", True, f"{uri}: not created yet; `mdp ingest` creates it")
    try:
        from mdp.store import VectorStore

        store = VectorStore.from_config(store_config, read_only=True)
        return _check("store", True, f"{uri}: version {store.version()}, {store.count_chunks()} chunks")
    except Exception as exc:
        return _check("store", False, f"{uri}: {exc}")


def check_dagster_home() -> dict[str, Any]:
    home = os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT / ".dagster_home")
    if not Path(home).is_dir():
        return _check(
            "dagster-home",
            False,
            f"{home} does not exist yet: `make run` or `make ui` creates it with the repo's dagster.yaml "
            "(or export DAGSTER_HOME to a folder holding a dagster.yaml)",
        )
    if not (Path(home) / "dagster.yaml").exists():
        return _check("dagster-home", False, f"{home}/dagster.yaml missing: cp dagster.yaml {home}/")
    return _check("dagster-home", True, home)


def run_doctor(config_file: Path | None = None) -> list[dict[str, Any]]:
    path = Path(config_file) if config_file else config_path()
    results = []
    try:
        config = load_config(path)
        results.append(_check("config", True, f"{path}: {len(config.sources)} sources"))
    except Exception as exc:
        results.append(_check("config", False, str(exc)))
        config = None
    results += [check_mlx(), check_blas(), check_kernels()]
    results += [check_model(config.model.path if config else None), check_spacy()]
    results.append(check_tesseract(list(config.parsing.languages) if config else None))
    if config:
        results.append(check_store(config.store))
        for source in config.sources:
            exists = Path(source.root).is_dir()
            results.append(
                _check(
                    f"source:{source.name}",
                    exists,
                    str(source.root)
                    if exists
                    else f"{source.root} does not exist (run `mdp sample` for the "
                    "bundled corpus, or fix [[sources]] root)",
                )
            )
    results.append(check_dagster_home())
    return results
