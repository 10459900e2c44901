"""``imagerouter generate``: submit one job to a running server and wait for it, showing what
the provider's queue reports meanwhile (``job.progress``: status, queue position, log line)
on one line that updates in place; then the image URLs (or the failure). It talks through the
client SDK: the ``client`` extra.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import click
from rich.markup import escape

from imagerouter.cli.output import console, err_console, fail, not_imagerouter
from imagerouter.cli.params import server_url_option
from imagerouter.extras import require

if TYPE_CHECKING:
    from imagerouter.client import Job, ProgressUpdate

__all__ = ["generate", "progress_line"]


def progress_line(update: ProgressUpdate) -> str:
    """The line shown for an update: ``fal: in queue, position 3`` / ``fal: running``."""
    words = {
        "IN_QUEUE": "in queue",
        "IN_PROGRESS": "running",
        "created": "in queue",
        "starting": "starting",
        "processing": "running",
    }
    text = f"{update.provider}: {words.get(update.provider_status, update.provider_status)}"
    if update.queue_position is not None:
        text += f", position {update.queue_position}"
    if update.log:
        text += f" ({update.log})"
    return text


def _outcome(job: Job, as_json: bool, server_url: str) -> None:
    if as_json:
        console.print_json(json.dumps(job.raw))
    elif job.status == "completed":
        provider = (job.result or {}).get("provider", "?")
        console.print(f"[green]completed[/green] by {escape(str(provider))}")
        for url in job.image_urls:
            # a server without a public_url links its own media by path: printed whole, so
            # that the line can be fetched as it is
            console.print(urljoin(f"{server_url}/", url), soft_wrap=True, highlight=False)
    if job.status != "completed":  # it ran and did not complete: 1, as the CLI's other
        # "ran, bad outcome" (2 is for a command that could not run)
        error: dict[str, Any] = job.error or {}
        what = f"job {job.id} {job.status}: {error.get('code', '')} {error.get('message', '')}"
        err_console.print(f"[red]error:[/red] {escape(what)}", soft_wrap=True)
        sys.exit(1)


@click.command()
@click.argument("prompt")
@click.option("--model", default="gpt-image-2", show_default=True, help="A catalog model.")
@click.option("--size", default=None, help="WxH, e.g. 1024x1024.")
@click.option("--seed", type=int, default=None)
@click.option("--duration", type=click.IntRange(min=1), default=None, help="Video: seconds.")
@click.option("--resolution", default=None, help="Video: 480p, 720p, 1080p…")
@click.option("--aspect-ratio", default=None, help="Video: 16:9, 9:16…")
@click.option("--audio/--no-audio", default=None, help="Video: with a sound track or not.")
@click.option("--image-url", default=None, help="Video: the first frame (an http(s) URL).")
@server_url_option
@click.option("--key", envvar="IMAGEROUTER_API_KEY", default=None, help="env IMAGEROUTER_API_KEY")
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True, help="Seconds."
)
@click.option("--json", "as_json", is_flag=True, help="Print the final job as JSON.")
def generate(
    prompt: str,
    model: str,
    size: str | None,
    seed: int | None,
    duration: int | None,
    resolution: str | None,
    aspect_ratio: str | None,
    audio: bool | None,
    image_url: str | None,
    url: str,
    key: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Generate an image (or, with a video model such as veo3-fast, a video) on a running
    server, showing queue progress while it waits."""
    require("client", "imagerouter generate")
    from imagerouter.client import APIConnectionError, APIStatusError, Client, ClientError

    try:
        with Client(url, key) as client:
            job = client.submit(
                prompt,
                model=model,
                size=size,
                seed=seed,
                duration=duration,
                resolution=resolution,
                aspect_ratio=aspect_ratio,
                generate_audio=audio,
                image_url=image_url,
            )
            err_console.print(f"job {job.id} queued ({escape(model)})", highlight=False)
            with err_console.status("waiting for a provider…") as line:

                def show(update: ProgressUpdate) -> None:
                    line.update(escape(progress_line(update)))
                    if not err_console.is_terminal:  # a log or a pipe: one line per update
                        err_console.print(progress_line(update), highlight=False)

                done = client.wait(job.id, timeout_s=timeout, on_progress=show)
    except APIConnectionError as exc:  # it says why, not where: the URL is the user's to check
        fail(f"cannot reach {url}: {exc} (is `imagerouter serve` running there?)")
    except APIStatusError as exc:
        if not exc.error:  # no error object of ours: some other server answered
            fail(not_imagerouter(url, "POST /v1/jobs", exc.status, exc.headers))
        fail(exc)
    except ClientError as exc:
        fail(exc)
    _outcome(done, as_json, url.rstrip("/"))
