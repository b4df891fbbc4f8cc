"""Uploads a file to a tus server with tuspy (tusclient), printing one JSON
line per event on stdout (crates/tusd-rs/tests/clients.rs reads them).

    python upload.py <endpoint> <file> <mode> [--chunk-size N]
                     [--url-storage PATH] [--delay-ms N]

modes:
  plain     Uploader.upload_chunk() until done, PATCHes of --chunk-size
  resume    like plain, with store_url=True and tusclient's FileStorage at
            --url-storage: a second run with the same file and storage finds
            the upload URL by the file's fingerprint and resumes it
  checksum  like plain with upload_checksum=True (Upload-Checksum: sha1 ...)
  badchecksum
            like checksum, but every digest is of the wrong bytes: the server
            must refuse the first PATCH (460 Checksum Mismatch)

events: {"event":"url"}, {"event":"start","offset":N} (offset the uploader
begins from, from its HEAD when resuming), {"event":"chunk","offset":N},
{"event":"success"}, or {"event":"error","status":N} (exit code 1).
"""

import argparse
import hashlib
import json
import sys
import time

from tusclient import client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.storage.filestorage import FileStorage


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def wrong_sha1(data=b""):
    """A sha1 of data with one extra byte: same shape, wrong digest."""
    return hashlib.sha1(data + b"\0")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("file")
    parser.add_argument(
        "mode", choices=["plain", "resume", "checksum", "badchecksum"]
    )
    parser.add_argument("--chunk-size", type=int, default=1024 * 1024)
    parser.add_argument("--url-storage")
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()

    kwargs = {
        "chunk_size": args.chunk_size,
        "metadata": {"filename": args.file.rsplit("/", 1)[-1]},
    }
    if args.mode == "resume":
        if not args.url_storage:
            parser.error("resume needs --url-storage")
        kwargs["store_url"] = True
        kwargs["url_storage"] = FileStorage(args.url_storage)
    if args.mode in ("checksum", "badchecksum"):
        kwargs["upload_checksum"] = True

    tus = client.TusClient(args.endpoint)
    uploader = tus.uploader(args.file, **kwargs)
    if args.mode == "badchecksum":
        # The algorithm is fixed per class; a subclass-free way to corrupt
        # the digest while keeping the announced name "sha1".
        uploader._BaseUploader__checksum_algorithm = wrong_sha1

    try:
        if uploader.url:
            emit(event="resuming", url=uploader.url)
        else:
            uploader.set_url(uploader.create_url())
            uploader.offset = 0
        emit(event="url", url=uploader.url)
        emit(event="start", offset=uploader.offset)
        size = uploader.get_file_size()
        while uploader.offset < size:
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            uploader.upload_chunk()
            sent = uploader.request._request_headers
            emit(
                event="chunk",
                offset=uploader.offset,
                checksum=sent.get("upload-checksum"),
            )
    except (TusUploadFailed, TusCommunicationError) as error:
        emit(
            event="error",
            status=error.status_code,
            message=str(error),
            body=(error.response_content or b"").decode("utf-8", "replace"),
        )
        return 1
    emit(event="success", url=uploader.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
