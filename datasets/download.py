"""`make data`: download MNIST and CIFAR-10 through torchvision (needs a network)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default="data", help="where the datasets go (default: ./data)")
    args = ap.parse_args(argv)
    from torchvision import datasets as tvd

    for cls in (tvd.MNIST, tvd.CIFAR10):
        try:
            cls(args.root, train=False, download=True)
            print(f"{cls.__name__}: ok under {args.root}")
        except Exception as exc:  # network errors come in many types
            print(f"{cls.__name__}: download failed ({exc}). Without a network, copy the files "
                  f"under {args.root} by hand; offline runs fall back to the stand-ins.", file=sys.stderr)
            return 1
    print("TinyImageNet and ImageNet are not downloadable automatically; see docs/reproducing.md (Data).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
