"""The ``sklearn-sae`` command line (also ``python -m sklearn_sae``).

One subcommand for now, ``convert``: UniProt's one-dataset-per-protein file
to the chunked matrix layout (`sklearn_sae.datasets.convert_embeddings`).
Errors print one line and exit with status 1; bad arguments exit with 2, as
argparse does.
"""

import argparse
import sys

__all__ = ["main"]

_PROG = "sklearn-sae"
_DTYPES = ("float16", "float32", "float64")
_COMPRESSIONS = ("none", "gzip", "lzf")


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print(f"{_PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError) as exc:
        print(f"{_PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _one_line(exc):
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return " ".join(str(exc).split())


def _parser():
    parser = argparse.ArgumentParser(prog=_PROG, description="Sparse autoencoders for protein embeddings.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser(
        "convert",
        help="convert an embeddings file to the chunked matrix layout",
        description=(
            "Convert an HDF5 embeddings file (UniProt's per-protein.h5, one dataset per protein, or a "
            "matrix-layout file) to the matrix layout: one chunked 2-D 'embeddings' dataset beside 'ids', "
            "fast for random reads of blocks of rows. DST is written under a temporary name and renamed "
            "when complete."
        ),
    )
    convert.add_argument("src", metavar="SRC", help="the file to convert")
    convert.add_argument("dst", metavar="DST", help="the file to write (replaced if it exists)")
    convert.add_argument("--dtype", choices=_DTYPES, default="float16", help="stored dtype (default: %(default)s)")
    convert.add_argument(
        "--compression", choices=_COMPRESSIONS, default="none", help="HDF5 compression filter (default: %(default)s)"
    )
    convert.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=None,
        metavar="N",
        help="rows per HDF5 chunk (default: as many as fill 128 KiB)",
    )
    convert.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar (it is shown only on a terminal anyway)"
    )
    convert.set_defaults(run=_convert)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _convert(args):
    import numpy as np

    from .datasets import convert_embeddings

    convert_embeddings(
        args.src,
        args.dst,
        dtype=np.dtype(args.dtype),
        compression=None if args.compression == "none" else args.compression,
        chunk_rows=args.chunk_rows,
        progress=not args.quiet and sys.stderr.isatty(),
    )
