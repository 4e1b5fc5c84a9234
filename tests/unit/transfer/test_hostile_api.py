

def test_an_endless_download_never_puts_more_than_the_object_on_disk(repo, tmp_path):
    big = bytes(range(256)) * (16 << 10)  # 4 MiB
    ref = ObjectRef(hashlib.sha256(big).hexdigest(), len(big))
    store = ObjectStore(tmp_path / "store")
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            if store.tmp_dir.exists():
                sizes = []
                for path in store.tmp_dir.iterdir():
                    try:
                        sizes.append(path.stat().st_size)
                    except FileNotFoundError:
                        pass
                peak = max(peak, sum(sizes))
            time.sleep(0.001)

    with HostileLfs() as server:
        server.objects[ref.oid] = big
        server.always("download", Reply(body="endless", length="absent"))
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            transport = HttpTransport(Endpoint("origin", server.lfs_url()), repo, FAST)
            with pytest.raises(TransferError, match="the download runs past the 4194304 bytes"):
                run_transfer(transport, "download", [ref], store, concurrency=1)
            transport.close()
        finally:
            done.set()
            watcher.join()
    assert peak <= ref.size
    assert not store.has(ref) and _tmp_files(store) == []
