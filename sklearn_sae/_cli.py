"""The ``sklearn-sae`` command line (also ``python -m sklearn_sae``).

One subcommand for now, ``convert``: embeddings in any format
`sklearn_sae.datasets.load_embeddings` reads to the chunked matrix layout
(`sklearn_sae.datasets.convert_embeddings`), or per-residue embeddings to a
chunked matrix of residues with their offsets
(`sklearn_sae.datasets.convert_residue_embeddings`).
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
            "Convert embeddings to the matrix layout: one chunked 2-D 'embeddings' dataset beside 'ids', "
            "fast for random reads of blocks of rows. SRC may be: an HDF5 file (UniProt's per-protein.h5, "
            "one dataset per protein; ProtTrans or bio_embeddings output, ids from 'original_id'; a "
            "matrix-layout file), converted in bounded memory; a directory of ESM extract.py .pt files "
            "(--layer); a .npy array with a .ids.txt file beside it; an .npz archive with 'ids' and "
            "'embeddings'; a CSV or Parquet table of vectors. With --residues, SRC holds per-residue "
            "embeddings (UniProt's per-residue.h5, ProtTrans, bio_embeddings, ESM --include per_tok) and DST "
            "gets one row per residue plus 'offsets'. DST is written under a temporary name and renamed "
            "when complete; an existing DST is replaced only if sklearn-sae wrote it, any other file is "
            "left as it was and the command fails."
        ),
    )
    convert.add_argument("src", metavar="SRC", help="the file to convert")
    convert.add_argument(
        "dst", metavar="DST", help="the file to write (an existing one is replaced only if sklearn-sae wrote it)"
    )
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
    convert.add_argument("--layer", type=int, default=None, help="the layer of ESM .pt files that hold several")
    convert.add_argument("--residues", action="store_true", help="SRC holds per-residue embeddings")
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

    from .datasets import convert_embeddings, convert_residue_embeddings

    progress = not args.quiet and sys.stderr.isatty()
    if args.residues:
        if args.compression != "none":
            raise ValueError("--compression is not available with --residues.")
        convert_residue_embeddings(args.src, args.dst, dtype=np.dtype(args.dtype), chunk_rows=args.chunk_rows,
                                   layer=args.layer, progress=progress)
        return
    convert_embeddings(
        args.src,
        args.dst,
        dtype=np.dtype(args.dtype),
        compression=None if args.compression == "none" else args.compression,
        chunk_rows=args.chunk_rows,
        progress=progress,
        layer=args.layer,
    )
