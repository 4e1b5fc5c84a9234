"""Moving objects between the local store and a remote: the Git LFS batch API over HTTP(S), or
another repository's store on this machine (see docs/transfer.md).

endpoint.py     where a remote keeps its objects (lfs.url, remote.<name>.lfsurl, .lfsconfig, URL)
credentials.py  git credential fill / approve / reject
base.py         the adapter contract: batch, upload, download
batch.py        the HTTP(S) adapter: batch requests, uploads, downloads, verify actions
batch_response.py  a batch response checked field by field (oids, sizes, hrefs, headers)
session.py      HTTP with bounded redirects, bodies and time; retries with back-off
pace.py         each operation's deadline and minimum transfer rate
redact.py       what of a URL or a server's message may be shown (one line, no credentials)
options.py      the settings from git config (lfs.* and theta.transfer.*)
local.py        the adapter for a path or file:// remote
queue.py        batches of 100, concurrent transfers, one-line failure reports
objects_in.py   which objects a set of commits references
remote.py       upload/download against a named remote; the adapter registry
ondemand.py     the downloader a smudge calls for missing objects
"""

from git_theta.transfer.remote import TRANSPORTS, download, upload

__all__ = ["TRANSPORTS", "download", "upload"]
