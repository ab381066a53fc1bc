"""`gallery ...` commands: list, search, show, history, favourite, tag, rescan, import, export, delete, bench."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from desktop.errors import LatentStudioError


def add_parser(sub) -> None:
    gallery = sub.add_parser("gallery", help="browse, search and manage the gallery")
    commands = gallery.add_subparsers(dest="gallery_command", parser_class=type(gallery), required=True)

    for name, text in (("list", "newest images first"), ("search", "full-text search over prompts and tags")):
        cmd = commands.add_parser(name, help=text)
        if name == "search":
            cmd.add_argument("text", help="words to find (each must match; prefixes count)")
        _filters(cmd)
        cmd.add_argument("--limit", type=int, default=50)
        cmd.add_argument("--offset", type=int, default=0)
        cmd.add_argument("--json", action="store_true")

    show = commands.add_parser("show", help="every detail of one image")
    show.add_argument("image", help="image id (see list) or path of a PNG, in the gallery or not")
    show.add_argument("--json", action="store_true")

    history = commands.add_parser("history", help="prompt history, pinned first")
    history.add_argument("text", nargs="?", default="")
    history.add_argument("--json", action="store_true")

    for name, text in (("favourite", "mark images as favourites"), ("unfavourite", "clear the favourite mark")):
        cmd = commands.add_parser(name, help=text)
        cmd.add_argument("ids", type=int, nargs="+")
    tag = commands.add_parser("tag", help="set an image's tags (replaces them; none clears)")
    tag.add_argument("id", type=int)
    tag.add_argument("tags", nargs="*")

    rescan = commands.add_parser("rescan", help="reconcile the index with the files on disk")
    rescan.add_argument("--rebuild", action="store_true", help="forget the index and read everything back from the files")
    rescan.add_argument("--json", action="store_true")
    imp = commands.add_parser("import", help="copy a folder of PNGs (any tool's) into the gallery")
    imp.add_argument("folder", type=Path)
    imp.add_argument("--json", action="store_true")

    export = commands.add_parser("export", help="copy images to a folder")
    export.add_argument("ids", type=int, nargs="+")
    export.add_argument("--to", type=Path, required=True, metavar="DIR")
    export.add_argument("--no-metadata", action="store_true", help="strip prompts and settings from the copies")
    export.add_argument("--json", action="store_true")

    delete = commands.add_parser("delete", help="move image files to the trash and out of the gallery")
    delete.add_argument("ids", type=int, nargs="+")
    delete.add_argument("--keep-file", action="store_true", help="only remove from the gallery; the file stays")
    delete.add_argument("--json", action="store_true")

    bench = commands.add_parser("bench", help="time opening, paging, search and rebuild on a synthetic gallery")
    bench.add_argument("--images", type=int, default=10_000)
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--window", action="store_true",
                       help="also time the window: shown, first page, worst stall scrolling to the end")


def _filters(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--model", help="only images made with this model")
    cmd.add_argument("--lora", metavar="NAME", help="only images whose prompt applies this LoRA")
    cmd.add_argument("--favourites", action="store_true", help="only favourites")
    cmd.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="made on or after this day")
    cmd.add_argument("--until", type=_date, metavar="YYYY-MM-DD", help="made before this day")
    cmd.add_argument("--size", metavar="WxH", help="only this size")
    cmd.add_argument("--present", action="store_true", help="leave out images whose file is missing")


def _date(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%d").timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"dates look like 2026-01-31 (got {text!r})") from None


def run(args) -> int:
    from desktop.gallery.store import open_gallery

    if args.gallery_command == "bench":
        from desktop.gallery import benchmark

        window = None
        if args.window:
            from desktop.ui import window_bench

            window = window_bench.measure
        return benchmark.run(args.images, args.json, window)
    with open_gallery() as gallery:
        return HANDLERS[args.gallery_command](gallery, args)


def _image_filter(args):
    from desktop.engine.request import parse_size
    from desktop.gallery.records import ImageFilter

    width = height = None
    if args.size:
        width, height = parse_size(args.size)
    return ImageFilter(text=getattr(args, "text", ""), model=args.model, favourites_only=args.favourites,
                       since=args.since, until=args.until, width=width, height=height,
                       include_missing=not args.present, lora=args.lora)


def _list(gallery, args) -> int:
    if args.limit < 1 or args.offset < 0:
        raise LatentStudioError("--limit must be at least 1 and --offset at least 0.")
    records = gallery.page(_image_filter(args), args.offset, args.limit)
    if args.json:
        _print_json([r.to_json() for r in records])
        return 0
    total = gallery.count(_image_filter(args))
    for r in records:
        flags = ("*" if r.favourite else " ") + ("!" if r.missing else " ")
        when = datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M")
        q = r.request
        print(f"{r.id:>6} {flags} {when}  {q.width}x{q.height}  {_cut(q.prompt.replace(chr(10), ' '), 60)}  [{q.model or ''}]")
    print(f"{len(records)} of {total} shown (* favourite, ! file missing)")
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _show(gallery, args) -> int:
    from desktop.gallery.metadata import read_image_metadata
    from desktop.gallery.pngchunks import UnreadablePNG

    record = _find(gallery, args.image)
    path = record.path if record else Path(args.image)
    if record is None and not path.is_file():
        raise LatentStudioError(f"No image {args.image!r}: give an id from `gallery list` or the path of a PNG.")
    data = record.to_json() if record else {"path": str(path), "in_gallery": False}
    try:
        info, meta = read_image_metadata(path)
        data["metadata"] = meta.to_json()
        data["chunks"] = sorted(info.text)
    except (UnreadablePNG, OSError) as exc:
        data["problem"] = str(exc)
    if args.json:
        _print_json(data)
    else:
        for key, value in data.items():
            print(f"{key:>16}: {value}")
    return 0


def _find(gallery, ref: str):
    """An id, or a path inside the gallery; None for a PNG elsewhere."""
    if ref.isdigit():
        return gallery.get(int(ref))
    try:
        gallery.relative(Path(ref))
    except LatentStudioError:
        return None
    return gallery.find(Path(ref))


def _history(gallery, args) -> int:
    entries = gallery.history(args.text)
    if args.json:
        _print_json([e.to_json() for e in entries])
    else:
        for e in entries:
            print(f"{e.id:>5} {'📌' if e.pinned else '  '} ×{e.use_count:<3} {_cut(e.prompt.replace(chr(10), ' '), 70)}")
    return 0


def _favourite(gallery, args) -> int:
    gallery.set_favourite(args.ids, args.gallery_command == "favourite")
    return 0


def _tag(gallery, args) -> int:
    gallery.set_tags(args.id, args.tags)
    return 0


def _rescan(gallery, args) -> int:
    from desktop.gallery import scan

    report = scan.rebuild(gallery) if args.rebuild else scan.rescan(gallery)
    _print_json(report.to_json()) if args.json else print(report.summary())
    return 0


def _import(gallery, args) -> int:
    from desktop.gallery import scan

    report = scan.import_folder(gallery, args.folder)
    _print_json(report.to_json()) if args.json else print(report.summary())
    return 0


def _export(gallery, args) -> int:
    written = gallery.export(args.ids, args.to, metadata=not args.no_metadata)
    _print_json([str(p) for p in written]) if args.json else print("\n".join(map(str, written)))
    return 0


def _delete(gallery, args) -> int:
    count = gallery.remove(args.ids) if args.keep_file else gallery.delete_files(args.ids)
    verb = "removed from the gallery (files kept)" if args.keep_file else "moved to the trash"
    _print_json({"count": count, "action": verb}) if args.json else print(f"{count} image(s) {verb}")
    return 0


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


HANDLERS = {"list": _list, "search": _list, "show": _show, "history": _history, "favourite": _favourite,
            "unfavourite": _favourite, "tag": _tag, "rescan": _rescan, "import": _import, "export": _export,
            "delete": _delete}
