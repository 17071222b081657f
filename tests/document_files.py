"""Generate small documents of every format the text modality reads: PDFs (text pages, embedded pictures,
scanned pages, encrypted, damaged), Word, OpenDocument, EPUB, HTML and subtitle files, and bombs."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mmretrieval.synth import shape_image


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_pdf(path: Path, pages: list[dict], info: dict[str, str] | None = None) -> Path:
    """A PDF whose pages each hold `lines` of Helvetica text and `images` (PIL, placed at (x, y, w, h) points),
    written object by object with a correct xref table."""
    objs: list[bytes] = []

    def add(body: bytes) -> int:
        objs.append(body)
        return len(objs)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    page_ids: list[int] = []
    pending: list[tuple[int, dict]] = []
    for p in pages:
        ops = [b"BT /F1 12 Tf 14 TL 72 740 Td"]
        for line in p.get("lines", []):
            ops.append(f"({_esc(line)}) Tj T*".encode("latin-1"))
        ops.append(b"ET")
        xobjs = []
        for k, (img, (x, y, w, h)) in enumerate(p.get("images", [])):
            data = _jpeg(img)
            oid = add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                      b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n" % (img.width, img.height, len(data))
                      + data + b"\nendstream")
            xobjs.append(b"/Im%d %d 0 R" % (k, oid))
            ops.append(b"q %d 0 0 %d %d %d cm /Im%d Do Q" % (w, h, x, y, k))
        content = b"\n".join(ops)
        cid = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        page_ids.append(add(b""))  # filled once the Pages object's number is known
        pending.append((cid, {"xobjs": xobjs}))
    pages_id = add(b"")
    for pid, (cid, extra) in zip(page_ids, pending):
        res = b"<< /Font << /F1 %d 0 R >> /XObject << %s >> >>" % (font, b" ".join(extra["xobjs"]))
        objs[pid - 1] = (b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources %s /Contents %d 0 R >>"
                         % (pages_id, res, cid))
    objs[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % i for i in page_ids), len(page_ids))
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    info_id = add(b"<< " + b" ".join(b"/%s (%s)" % (k.encode(), _esc(v).encode("latin-1"))
                                     for k, v in (info or {}).items()) + b" >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, catalog, info_id, xref)
    path.write_bytes(bytes(out))
    return path


def text_image(lines: list[str], size: int = 40, width: int = 1200, angle: float = 0.0,
               background: Image.Image | None = None, height: int | None = None) -> Image.Image:
    """Black print on white (or on `background`), as a scanner or a camera would see it."""
    font = ImageFont.load_default(size=size)
    h = height or int(size * 1.6 * len(lines) + 2 * size)
    img = background.resize((width, h)).convert("RGB") if background is not None else Image.new("RGB", (width, h), "white")
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((size, size + i * size * 1.6), line, fill="black", font=font)
    return img.rotate(angle, expand=True, fillcolor="white") if angle else img


def sample_pdf(path: Path) -> Path:
    """Three pages: prose about harbours (p. 1), a page with a red-circle photo and a caption (p. 2), and a
    scanned page whose only text is in its picture (p. 3)."""
    scan = text_image(["The lighthouse keeper counted", "seventeen ships before dawn."], size=36, width=1224,
                      height=1584)  # a letter-size page at 144 dpi
    return write_pdf(path, [
        {"lines": ["Harbours of the northern coast.", "Fishing boats return at dusk with herring.",
                   "The harbour master keeps a ledger of every vessel."]},
        {"lines": ["Figure 1 shows the red circle used as a marker."],
         "images": [(shape_image("red", "circle", size=256), (100, 300, 256, 256)),
                    (Image.new("RGB", (16, 16), "black"), (20, 20, 16, 16))]},  # a decoration: skipped
        {"images": [(scan, (0, 0, 612, 792))]},
    ], info={"Title": "Coastal notes", "Author": "A. Keeper", "CreationDate": "D:20190304120000Z"})


def _zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" ' \
       'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" ' \
       'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" ' \
       'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" ' \
       'xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture"'


def _wp(text: str, style: str | None = None) -> str:
    ppr = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{ppr}<w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r></w:p>"


def sample_docx(path: Path, *, body_extra: str = "") -> Path:
    """Two headed sections, a table, a picture (a blue square) in the second section, and core properties."""
    pic = ('<w:p><w:r><w:drawing><wp:inline><a:graphic><a:graphicData><pic:pic><pic:blipFill>'
           '<a:blip r:embed="rIdImg"/></pic:blipFill></pic:pic></a:graphicData></a:graphic></wp:inline>'
           '</w:drawing></w:r></w:p>')
    body = (_wp("Gardening", "Heading1") + _wp("Tomatoes need full sun and steady water.")
            + "<w:tbl><w:tr><w:tc>" + _wp("Basil") + "</w:tc><w:tc>" + _wp("Mint") + "</w:tc></w:tr></w:tbl>"
            + _wp("Astronomy", "Heading1") + _wp("Saturn's rings are made of ice and rock.") + pic + body_extra)
    buf = io.BytesIO()
    shape_image("blue", "square", size=200).save(buf, format="PNG")
    return _zip(path, {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        "word/document.xml": f'<?xml version="1.0"?><w:document {W_NS}><w:body>{body}</w:body></w:document>',
        "word/_rels/document.xml.rels": '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                                        'package/2006/relationships"><Relationship Id="rIdImg" Type="image" '
                                        'Target="media/image1.png"/></Relationships>',
        "word/media/image1.png": buf.getvalue(),
        "docProps/core.xml": '<?xml version="1.0"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/'
                             'package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" '
                             'xmlns:dcterms="http://purl.org/dc/terms/"><dc:title>Hobbies</dc:title>'
                             '<dc:creator>Jo Writer</dc:creator><dcterms:created>2021-05-06T07:08:09Z</dcterms:created>'
                             '</cp:coreProperties>',
    })


def sample_odt(path: Path) -> Path:
    t = 'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" ' \
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" ' \
        'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:xlink="http://www.w3.org/1999/xlink"'
    buf = io.BytesIO()
    shape_image("green", "triangle", size=200).save(buf, format="PNG")
    content = (f'<?xml version="1.0"?><office:document-content {t}><office:body><office:text>'
               '<text:h text:outline-level="1">Cooking</text:h><text:p>Bread rises<text:s text:c="2"/>overnight'
               '<text:tab/>in a warm kitchen.</text:p><text:h text:outline-level="1">Travel</text:h>'
               '<text:p>Trains cross the Alps through long tunnels.<draw:frame><draw:image '
               'xlink:href="Pictures/tri.png"/></draw:frame></text:p></office:text></office:body></office:document-content>')
    meta = ('<?xml version="1.0"?><office:document-meta xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0">'
            '<office:meta><dc:title>Weekend</dc:title><meta:creation-date>2020-01-02T03:04:05</meta:creation-date>'
            '</office:meta></office:document-meta>')
    return _zip(path, {"mimetype": "application/vnd.oasis.opendocument.text", "content.xml": content,
                       "meta.xml": meta, "Pictures/tri.png": buf.getvalue()})


def sample_epub(path: Path) -> Path:
    buf = io.BytesIO()
    shape_image("yellow", "circle", size=200).save(buf, format="PNG")
    chapter = ('<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>{t}</title></head>'
               '<body><h1>{t}</h1><p>{p}</p>{img}</body></html>')
    return _zip(path, {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:'
                                  'container"><rootfiles><rootfile full-path="OEBPS/book.opf"/></rootfiles></container>',
        "OEBPS/book.opf": '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf"><metadata '
                          'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Sea Stories</dc:title>'
                          '<dc:creator>Ann Sailor</dc:creator><dc:date>2015-06-01</dc:date></metadata><manifest>'
                          '<item id="c1" href="text/one.xhtml" media-type="application/xhtml+xml"/>'
                          '<item id="c2" href="text/two.xhtml" media-type="application/xhtml+xml"/>'
                          '<item id="i" href="img/sun.png" media-type="image/png"/></manifest>'
                          '<spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>',
        "OEBPS/text/one.xhtml": chapter.format(t="The Storm", p="Waves broke over the bow all night.", img=""),
        "OEBPS/text/two.xhtml": chapter.format(t="Calm Water", p="At noon the sea lay flat as glass.",
                                               img='<img src="../img/sun.png" alt="the sun"/>'),
        "OEBPS/img/sun.png": buf.getvalue(),
    })


def sample_html(path: Path, script_mb: int = 0) -> Path:
    script = "<script>" + ("var x = 'the quick brown fox';\n" * (script_mb * 32768)) + "</script>"
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>Birds of the marsh</title>
<style>body {{ color: red }}</style>{script}</head><body>
<nav><a href="/">Home</a> <a href="/about">About us</a></nav>
<header>Site banner</header>
<main><h1>Herons</h1><p>Herons stand still in shallow water &amp; wait for fish.</p>
<h2>Bitterns</h2><p>Bitterns boom at night in the reeds.</p></main>
<footer>Copyright footer text</footer></body></html>""", encoding="utf-8")
    return path


SRT = """1
00:00:01,000 --> 00:00:03,500
<i>Welcome aboard</i> the night train.

2
00:00:04,000 --> 00:00:06,000
Tickets, please.

3
00:01:00,000 --> 00:01:04,250
We arrive in Vienna at dawn.

4
00:01:05,000 --> broken
This cue has no end time.
"""

VTT = """WEBVTT

NOTE a comment

00:00:02.000 --> 00:00:05.000 align:start
The volcano erupted at noon.

00:00:40.500 --> 00:00:44.000
<v Narrator>Ash fell for three days.
"""


def zip_bomb(path: Path, member: str, inflated: int, extra: dict[str, str] | None = None) -> Path:
    """A zip whose `member` inflates to `inflated` bytes of spaces (about 1000:1), built without holding them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in (extra or {}).items():
            z.writestr(name, data)
        with z.open(member, "w", force_zip64=True) as f:
            f.write(b"<?xml version='1.0'?><w:document " + W_NS.encode() + b"><w:body><w:p><w:r><w:t>")
            block = b" " * (1 << 20)
            for _ in range(inflated >> 20):
                f.write(block)
            f.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return path


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: character errors of an OCR reading against the truth."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
