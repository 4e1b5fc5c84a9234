"""Moving objects between the local store and a remote: the Git LFS batch API over HTTP(S), or
another repository's store on this machine (see docs/transfer.md).

endpoint.py     where a remote keeps its objects (lfs.url, remote.<name>.lfsurl, .lfsconfig, URL)
credentials.py  git credential fill / approve / reject
base.py         the adapter contract: batch, upload, download
batch.py        the HTTP(S) adapter (httpx, keep-alive, retries, verify actions)
local.py        the adapter for a path or file:// remote
queue.py        batches of 100, concurrent transfers, one-line failure reports
objects_in.py   which objects a set of commits references
remote.py       upload/download against a named remote; the adapter registry
ondemand.py     the downloader a smudge calls for missing objects
"""

from git_theta.transfer.remote import TRANSPORTS, download, upload

__all__ = ["TRANSPORTS", "download", "upload"]
