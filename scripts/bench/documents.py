"""Documents: PDF text extraction (PDFium, the engine's choice, side by side with pypdf), OCR beside the text and
image towers, and OCR's character error rate on known sentences: each OCR engine installed (PP-OCRv6 through
`rapidocr` 3.x, PP-OCRv4 through `rapidocr-onnxruntime`), side by side, with its peak memory.

Run: `python scripts/bench/documents.py` (~3 min on 2 cores; needs the test extra: pypdf, an OCR wheel).
Prints a table and one JSON line.
"""
from __future__ import annotations

import gc
import glob
import importlib.util
import json
import multiprocessing
import os
import logging
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from document_files import edit_distance, text_image, write_pdf  # noqa: E402

import mmretrieval as mmr  # noqa: E402
from mmretrieval.documents import blocks, format_of, ocr  # noqa: E402
from mmretrieval.process_memory import current_bytes, peak_bytes, reset_peak  # noqa: E402
from mmretrieval.space.runtime import Space  # noqa: E402
from mmretrieval.synth import shape_image  # noqa: E402

WORDS = ("harbour ledger vessel herring dusk lighthouse keeper counted ships dawn northern coast boats tide "
         "storm anchor rope sail chart compass").split()


def prose_pdf(path: Path, pages: int = 200) -> Path:
    lines = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(11)) + "." for i in range(45)]
    return write_pdf(path, [{"lines": lines} for _ in range(pages)])


def rate(fn, n_items: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_items / best


def pdf_rates(pdf: Path, real: list[str]) -> dict[str, float]:
    import pypdf
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)

    def pdfium_all(paths):
        for p in paths:
            try:
                list(blocks(format_of(p), None, p))
            except mmr.DecodeError:
                pass

    def pypdf_all(paths):
        for p in paths:
            try:
                for page in pypdf.PdfReader(p).pages:
                    page.extract_text()
            except Exception:
                pass

    def pages(p):
        try:
            return len(pypdf.PdfReader(p).pages)
        except Exception:
            return 0

    n_real = sum(pages(p) for p in real)
    n = pages(str(pdf))
    return {"pdfium_prose": rate(lambda: pdfium_all([str(pdf)]), n),
            "pypdf_prose": rate(lambda: pypdf_all([str(pdf)]), n),
            "pdfium_real": rate(lambda: pdfium_all(real), n_real) if real else 0.0,
            "pypdf_real": rate(lambda: pypdf_all(real), n_real) if real else 0.0}


SENTENCES = ["The museum opens at nine o'clock.", "Platform 4 for trains to Leeds and York",
             "Fresh fish sold daily 7.50 per kg", "Please keep this door closed",
             "Invoice 2024-117: total due 1,280.00", "Meeting moved to Thursday afternoon"]


def cer_cases():
    for s in SENTENCES:
        yield "plain 32 px", s, text_image([s], size=32)
        yield "large 56 px, 4° rotation", s, text_image([s], size=56, angle=4)
        yield "on a photo-like background", s, text_image([s], size=44, background=shape_image("green", "square"))
        yield "small 20 px", s, text_image([s], size=20, width=700)



def ocr_measures(name: str) -> dict[str, object]:
    """Speed, the process's peak memory over loading and reading, and character error rate of OCR engine `name`."""
    os.environ["MMR_OCR_ENGINE"] = name
    scan = text_image(["The lighthouse keeper counted", "seventeen ships before dawn."] * 8, size=36,
                      width=1224, height=1584)
    sign = text_image(["OPEN EVERY DAY", "fresh bread"], size=48, background=shape_image("yellow"))
    gc.collect()
    reset_peak()
    before = current_bytes()
    ocr.read_text(sign)  # models loaded and warmed outside the timing
    out: dict[str, object] = {"scan_pages_per_s": round(rate(lambda: ocr.read_text(scan), 1), 2),
                              "photos_per_s": round(rate(lambda: ocr.read_text(sign), 1), 2)}
    out["peak_mb"] = round(((peak_bytes() or 0) - (before or 0)) / 2**20)
    by_kind: dict[str, list[int]] = {}
    for kind, truth, img in cer_cases():
        got = " ".join(ocr.read_text(img).split()).lower()
        e = by_kind.setdefault(kind, [0, 0])
        e[0] += edit_distance(got, truth.lower())
        e[1] += len(truth)
    out["cer"] = {k: round(e / n, 4) for k, (e, n) in by_kind.items()}
    out["cer_overall"] = round(sum(e for e, _ in by_kind.values()) / sum(n for _, n in by_kind.values()), 4)
    return out


def main() -> None:
    out: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
                              f"{__import__('os').cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        pdf = prose_pdf(Path(tmp) / "prose.pdf")
        real = sorted(glob.glob(str(ROOT.parent / "shared/realworld/pikepdf/**/*.pdf"), recursive=True))
        out["pdf_pages_per_s"] = {k: round(v, 1) for k, v in pdf_rates(pdf, real).items()}

        space = Space(mmr.resolve_model_arg("tiny"))
        passages = [f"{' '.join(WORDS[i % 10:i % 10 + 9])} number {i}." for i in range(512)]
        out["text_tower_tiny_passages_per_s"] = round(rate(lambda: space.text.encode(passages), len(passages)), 1)
        imgs = [shape_image("red")] * 64
        out["image_tower_tiny_images_per_s"] = round(rate(lambda: space.image.encode(imgs), len(imgs)), 1)

        for name in ocr.ENGINES:
            if importlib.util.find_spec(ocr.ENGINES[name]) is not None:
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as alone:
                    out.setdefault("ocr", {})[name] = alone.submit(ocr_measures, name).result()  # its own memory

    r = out["pdf_pages_per_s"]
    print(f"PDF text, pages/s      PDFium {r['pdfium_prose']:8.1f}  pypdf {r['pypdf_prose']:8.1f}  "
          f"(200 pages of prose; ratio {r['pdfium_prose'] / r['pypdf_prose']:.1f}x)")
    if r["pdfium_real"]:
        print(f"                       PDFium {r['pdfium_real']:8.1f}  pypdf {r['pypdf_real']:8.1f}  "
              f"(pikepdf's 27 test PDFs; drawn pages found, not rendered)")
    print(f"text tower (tiny)      {out['text_tower_tiny_passages_per_s']:8.1f} passages/s")
    print(f"image tower (tiny)     {out['image_tower_tiny_images_per_s']:8.1f} images/s")
    for name, m in out.get("ocr", {}).items():
        print(f"OCR {name:<18} {m['scan_pages_per_s']:8.2f} scanned pages/s (1224x1584, 16 lines), "
              f"{m['photos_per_s']:.2f} photos/s (a sign), peak memory +{m['peak_mb']} MB")
        print("  character error rate:", ", ".join(f"{k} {v:.1%}" for k, v in m["cer"].items()),
              f"| overall {m['cer_overall']:.1%}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
