"""Upload the built web client (web/dist) to the stack's WebBucket and refresh CloudFront.

    python scripts/deploy_web.py [--stack prdtool-dev] [--region eu-west-1]

Run by `make deploy` after `sam deploy`. Hashed files under assets/ are immutable (cached for a
year); index.html, sw.js and the manifest are revalidated on every load, and CloudFront's copies
of them are invalidated. Old assets are kept, so a page loaded before the deploy still finds the
chunks it asks for.
"""

from __future__ import annotations

import argparse
import mimetypes
import time
import tomllib
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "web" / "dist"
ALWAYS_FRESH = ("index.html", "sw.js", "assets/manifest.json")


def _stack_name(config_env: str) -> str:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    return str(config[config_env]["global"]["parameters"]["stack_name"])


def _outputs(cloudformation: object, stack: str) -> dict[str, str]:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]  # type: ignore[attr-defined]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def cache_control(key: str) -> str:
    if key in ALWAYS_FRESH or not key.startswith("assets/"):
        return "no-cache"
    return "public, max-age=31536000, immutable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-env", default="default", help="samconfig.toml environment (default, prod)")
    parser.add_argument("--stack", help="stack name (default: samconfig.toml's)")
    parser.add_argument("--region")
    args = parser.parse_args()
    if not (DIST / "index.html").is_file():
        raise SystemExit("web/dist is not built: run `make web` first")
    session = boto3.session.Session(region_name=args.region)
    outputs = _outputs(session.client("cloudformation"), args.stack or _stack_name(args.config_env))
    bucket, distribution = outputs["WebBucketName"], outputs["WebDistributionId"]
    s3 = session.client("s3")
    files = sorted(p for p in DIST.rglob("*") if p.is_file() and not p.name.startswith("."))
    # Assets first, index.html last: a visitor never gets a page whose chunks are not there yet.
    for path in sorted(files, key=lambda p: p.relative_to(DIST).as_posix() in ALWAYS_FRESH):
        key = path.relative_to(DIST).as_posix()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        s3.upload_file(str(path), bucket, key,
                       ExtraArgs={"ContentType": content_type, "CacheControl": cache_control(key)})
        print(f"uploaded {key}")
    session.client("cloudfront").create_invalidation(
        DistributionId=distribution,
        InvalidationBatch={"Paths": {"Quantity": len(ALWAYS_FRESH), "Items": [f"/{k}" for k in ALWAYS_FRESH]},
                           "CallerReference": f"deploy-{int(time.time())}"},
    )
    print(f"web client deployed: {outputs.get('WebUrl', '')}")


if __name__ == "__main__":
    main()
