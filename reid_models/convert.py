"""Convert a torchreid or fast-reid checkpoint into a ``reid_models`` checkpoint the pipeline can embed with.

    python -m reid_models.convert --from torchreid SRC --out CKPT [--model NAME] [--input-size H W]
    python -m reid_models.convert --from fastreid model_final.pth --out bot_r50.pt

SRC is a checkpoint file or, with internet, a known model-zoo name (``osnet_x1_0_msmt17``, ...;
``--list`` prints them). ``--model`` names the torchreid architecture (default: detected from the keys;
for fast-reid only ``bot_r50``). Which architectures map is described in ``reid_models.convert_weights``.
Bad input (unknown --from, missing or non-torch file, wrong architecture or keys, failed download)
prints one ``error: ...`` line and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys

from .common import one_line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        print(f"error: {one_line(message)} (see python -m reid_models.convert --help)", file=sys.stderr)
        raise SystemExit(2)


def get_args_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m reid_models.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", nargs="?", help="checkpoint file, or a known model-zoo name")
    parser.add_argument("--from", dest="framework", help="torchreid | fastreid")
    parser.add_argument("--out", help="reid_models checkpoint to write (.pt)")
    parser.add_argument("--model", default=None, help="torchreid architecture (default: detected) or bot_r50")
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="input size stored in the checkpoint (default 256 128, what the weights were trained at)")
    parser.add_argument("--list", action="store_true", help="print the known model-zoo names and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    from . import convert_weights as cw

    if args.list:
        for name, entry in cw.KNOWN_WEIGHTS.items():
            print(f"{name:<24}{entry.arch:<16}{entry.url}")
        return 0
    required = (("--from", args.framework), ("SRC", args.src), ("--out", args.out))
    missing = [flag for flag, value in required if not value]
    if missing:
        parser.error(f"missing {', '.join(missing)}")
    try:
        result = cw.convert(args.framework, args.src, args.out, model=args.model,
                            input_size=tuple(args.input_size) if args.input_size else cw.INPUT_SIZE)
    except (cw.ConversionError, OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    h, w = result.input_size
    print(f"converted {args.framework} {result.source_arch} -> {result.model} {result.path} "
          f"(embedding {result.embedding_dim}-d, input {h}x{w}, {result.num_classes} classes, "
          f"source sha256 {result.sha256[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
