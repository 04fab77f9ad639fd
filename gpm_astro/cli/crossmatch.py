"""``gpm-astro crossmatch``: attach the nearest image within a radius to every label row."""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "crossmatch", help="nearest-neighbour sky match of labels to images",
        description="Read the label table LABELS and the image catalogue IMAGES, attach to "
                    "every label row its nearest image within --radius (a left join: every "
                    "label row is kept, in order), write OUT and print the match counts.")
    parser.add_argument("labels", metavar="LABELS", help="label table file")
    parser.add_argument("images", metavar="IMAGES", help="image catalogue file")
    parser.add_argument("output", metavar="OUT", help="output table file")
    parser.add_argument("--radius", type=float, default=1.0,
                        help="match radius in arcsec (default 1.0)")
    parser.add_argument("--one-to-one", action="store_true",
                        help="give each image to at most one label (the closest)")
    parser.add_argument("--label-id", default=None, metavar="COLUMN",
                        help="label id column; duplicated ids become an error")
    parser.add_argument("--image-id", default=None, metavar="COLUMNS",
                        help="comma-separated image id columns, e.g. brickid,objid")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    from . import refuse_existing
    import astropy.units as u

    from ..catalog import MATCH_FLAGS, crossmatch
    from ..io import read_table, write_table

    refuse_existing(args.output, args.overwrite)
    labels = read_table(args.labels)
    images = read_table(args.images, attach_cutouts=True)
    image_id = args.image_id.split(",") if args.image_id else None
    out = crossmatch(labels, images, radius=args.radius * u.arcsec,
                     one_to_one=args.one_to_one, label_id=args.label_id, image_id=image_id)
    print(f"labels {len(labels):,d}  images {len(images):,d}  radius {args.radius} arcsec")
    for flag in MATCH_FLAGS:
        print(f"{flag:<20} {int((out['match_flag'] == flag).sum()):>10,d}")
    write_table(out, args.output, overwrite=args.overwrite)
    print(f"wrote {len(out):,d} rows to {args.output}")
    return 0
