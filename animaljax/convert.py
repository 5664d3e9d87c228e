"""Convert a published PANNs or AST PyTorch checkpoint into a converted model directory.

  python -m animaljax.convert panns --checkpoint Cnn14_mAP=0.431.pth --out converted/cnn14
  python -m animaljax.convert ast --checkpoint audioset_10_10_0.4593.pth --out converted/ast --input-frames 512
  python -m animaljax.convert imagenet --checkpoint resnet18.safetensors --encoder resnet18 --out converted/r18
  python -m animaljax.convert efficientat --checkpoint mn10_as_mAP_471.pt --out converted/mn10 [--arch mn10]

The directory holds `model.json` and an orbax checkpoint of the variables; read it with
`animaljax.models.pretrained.load_converted` (the conversion is `pretrained.convert`; the weight mapping
itself lives in `animaljax.models.torch_weights`).
"""

from __future__ import annotations

import argparse
import json
import sys

from animaljax import cli
from animaljax.models import efficientat_weights, imagenet_weights, pretrained


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.convert", description=__doc__.split("\n")[0])
  parser.add_argument("kind", choices=["panns", "ast", "imagenet", "efficientat"], help="checkpoint family")
  parser.add_argument(
    "--checkpoint",
    required=True,
    help=".pth file (read with torch.load(weights_only=True)); imagenet, efficientat: also .safetensors",
  )
  parser.add_argument("--out", required=True, help="output directory (a new or empty folder)")
  parser.add_argument(
    "--variant",
    choices=["cnn14", "cnn10", "cnn6", "resnet22", "resnet38", "resnet54", "mobilenetv1", "mobilenetv2"],
    help="PANNs: check the detected variant",
  )
  parser.add_argument(
    "--encoder", choices=["resnet18", "resnet34", "resnest50"], help="imagenet: check the detected model"
  )
  parser.add_argument(
    "--arch", choices=efficientat_weights.ARCHITECTURES, help="efficientat: check the detected architecture"
  )
  parser.add_argument(
    "--sample-rate",
    type=int,
    choices=[32000, 16000, 8000],
    help="PANNs: expected sample rate; imagenet: the log-mel front end's (default 32000)",
  )
  parser.add_argument(
    "--input-frames", type=cli.positive_int, help="AST: lay pos_embed out for this many frames (1024 = as is)"
  )
  parser.add_argument(
    "--keep-head", action=argparse.BooleanOptionalAction, default=True, help="keep the head"
  )
  parser.add_argument(
    "--force", action="store_true", help="replace --out if it is a converted model dir (never another folder)"
  )
  return parser


def run(args: argparse.Namespace) -> int:
  """Converts as the parsed arguments say; returns the exit status."""
  try:
    if args.kind == "imagenet":  # timm/torchvision weights for a log-mel encoder, without their head
      root, detected = imagenet_weights.convert_imagenet(
        args.checkpoint,
        args.out,
        encoder=args.encoder,
        sample_rate=args.sample_rate or 32000,
        force=args.force,
      )
    elif args.kind == "efficientat":  # EfficientAT mn*/dymn*, on its own front end
      root, detected = efficientat_weights.convert_efficientat(
        args.checkpoint, args.out, arch=args.arch, keep_head=args.keep_head, force=args.force
      )
    else:
      root, detected = pretrained.convert(
        args.checkpoint, args.kind, args.out, keep_head=args.keep_head, sample_rate=args.sample_rate,
        input_frames=args.input_frames, variant=args.variant, force=args.force,
      )  # fmt: skip
  except ImportError as err:  # torch is an optional extra: a setup step the user can take
    raise cli.UserError(str(err)) from err
  print(f"detected: {json.dumps(detected)}")
  print(f"wrote {root}")
  return 0


def main(argv: list[str] | None = None) -> int:
  return cli.parse_and_run(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
