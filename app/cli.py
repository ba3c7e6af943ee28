"""`autoglm`: serve, worker, create-admin, ingest, migrate (+ generate/chat from inference.cli)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

from app.settings import Settings, reload_settings, settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.db import migrate
    from app.worker_proc import WorkerSupervisor, requeue_pending
    from ingest.recovery import run_maintenance

    host, port = args.host or settings.host, args.port or settings.port
    if (why := _cannot_listen(host, port)) is not None:
        # before the migrations and the embedded worker: a second `serve` on a taken port started its
        # worker and re-queued the documents, then uvicorn's "address already in use" scrolled away
        print(f"error: cannot listen on {host}:{port}: {why}; is another `autoglm serve` running? "
              "Stop it, or choose another port with --port (or AUTOGLM_PORT).", file=sys.stderr)  # fmt: skip
        return 1
    if args.model:
        os.environ["AUTOGLM_MODEL_PATH"] = str(Path(args.model).resolve())
        settings.model_path = os.environ["AUTOGLM_MODEL_PATH"]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate()
    supervisor = None
    if settings.embedded_worker and not args.no_worker:
        supervisor = WorkerSupervisor()
        supervisor.start()
        if settings.embedded_broker:
            requeue_pending()
    # Documents left stuck or unsent by a crash are picked up now, not only by a worker's next check.
    threading.Thread(target=run_maintenance, name="ingest-recovery", daemon=True).start()
    threading.Thread(target=_warm_embedder, name="warm-embedder", daemon=True).start()
    try:
        uvicorn.run(
            "app.main:app",
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            # SIGTERM: answer streams get this long to finish, then their connections are closed.
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
    # NOTE: everything is stopped and committed by now; the interpreter's own teardown of torch, transformers,
    # scipy and the rest took 1.4 s more (of a 2-3 s Ctrl-C) on a 2-core machine, so the process ends here.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the API could not listen on host:port (bound as uvicorn binds it), or None when it can."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as e:  # EADDRINUSE, EACCES (a port below 1024), an unknown host name
        return e.strerror or str(e)
    return None


def _warm_embedder() -> None:
    """Load the embedding model in the background so the first search does not wait for it."""
    try:
        from app.search import _embedder

        _embedder().embed_query("warm-up")
    except Exception:  # noqa: BLE001  search loads it again on demand and reports the error there
        logging.getLogger(__name__).exception("could not load the embedding model")


def _worker(args: argparse.Namespace) -> int:
    from app.worker_proc import lower_priority, worker_argv, worker_nice

    argv = worker_argv(concurrency=args.concurrency, name=args.name)
    lower_priority(
        worker_nice(embedded=False)
    )  # kept across exec, by every thread and pool process it starts
    os.execv(argv[0], argv)  # the worker replaces this process: signals reach Celery directly
    return 0  # unreachable


def _migrate(_: argparse.Namespace) -> int:
    from app.db import migrate

    migrate()
    print(f"database at head: {settings.db_url}")
    return 0


def _create_admin(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from app import auth, sessions
    from app.db import migrate, session_scope
    from app.models import Role, User

    name = args.name.strip()  # as the API stores names and the sign-in page sends them
    if not name:
        print("error: --name needs a name", file=sys.stderr)
        return 2
    password_hash = None
    if args.password:
        password = os.environ.get("AUTOGLM_ADMIN_PASSWORD")
        if password is None:
            import getpass

            password = getpass.getpass(f"password for {name}: ")
        try:
            password_hash = sessions.hash_password(password)  # fails before anything is written
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    migrate()
    with session_scope() as s:
        user = s.exec(select(User).where(User.name == name)).first()
        created = user is None
        if user is None:
            user, key = auth.create_user(s, name, Role.admin)
        else:
            if user.role != Role.admin:
                print(f"error: user {name!r} exists and is not an admin", file=sys.stderr)
                return 1
            key = auth.issue_key(s, user)
        if password_hash is not None:
            user.password_hash = password_hash
        can_sign_in = user.password_hash is not None
        s.commit()
    # What to do next, on stderr: stdout is the key alone, for scripts. The user name to sign in with was
    # said nowhere (README nor output), and the key came without a word.
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    did = "Created administrator" if created else "New API key for administrator"
    how = (
        f"sign in at http://{host}:{settings.port}/ as {name}"
        if can_sign_in
        else "no password yet: run this again with --password to sign in in a browser"
    )
    print(f"{did} {name!r} ({how}). Its API key, shown only now:", file=sys.stderr)
    print(key)
    return 0


def _files(paths: list[str]) -> tuple[list[tuple[Path, str]], int]:
    """((file, document name) pairs, how many paths do not exist): a file given by itself is named by its file name, a file found in a given
    folder by its path from that folder's name on ("handbook/hr/policy.pdf", as a browser's folder upload
    names it), so that same-named files in different folders stay different documents (a new file under an
    existing name replaces that document). Hidden files and folders are skipped."""
    out: list[tuple[Path, str]] = []
    missing = 0
    for p in map(Path, paths):
        if p.is_dir():
            top = p.resolve()
            out += sorted(
                (f, f.relative_to(top.parent).as_posix())
                for f in top.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(top).parts)
            )
        elif p.is_file():
            out.append((p, p.name))
        else:  # a mistyped path is a failure of the run, not a warning a script never sees
            missing += 1
            print(f"error: {p}: no such file or folder", file=sys.stderr)
    return out, missing


def _ingest(args: argparse.Namespace) -> int:
    from sqlmodel import select
    from tqdm import tqdm

    from app import uploads
    from app.db import migrate, session_scope
    from app.models import Collection, DocStatus, Document
    from ingest import pipeline
    from ingest.tasks import enqueue_document

    name = args.collection.strip()  # as the API stores it
    if not name:
        print("error: --collection needs a name", file=sys.stderr)
        return 2
    migrate()
    files, failures = _files(args.paths)
    with session_scope() as s:
        coll = s.exec(select(Collection).where(Collection.name == name)).first()
        if coll is None:
            coll = Collection(name=name)
            s.add(coll)
            s.commit()
        cid = coll.id
    todo: list[int] = []
    docs: list[int] = []
    ready = 0
    for f, doc_name in tqdm(files, desc="upload", unit="file", disable=args.quiet):
        if f.stat().st_size > settings.max_upload_bytes:
            failures += 1
            tqdm.write(f"rejected {f}: {uploads.too_large_detail()}")
            continue
        try:  # a plain ZIP archive stands for its files (uploads.unpack)
            items = uploads.unpack(doc_name, f.read_bytes())
        except uploads.Rejected as r:
            failures += 1
            tqdm.write(f"rejected {f}: {r.detail}")
            continue
        for item in items:
            with session_scope() as s:
                try:
                    if isinstance(item, uploads.Rejected):
                        raise item
                    doc, new = uploads.add_document(s, cid, item[0], item[1], None)
                except uploads.Rejected as r:
                    failures += 1
                    tqdm.write(f"rejected {r.filename}: {r.detail}")
                    continue
                s.commit()
                docs.append(doc.id)
                if new:
                    todo.append(doc.id)
                elif doc.filename != (shown := uploads.clean_filename(item[0])):
                    tqdm.write(f"{shown}: the same content as {doc.filename}, already ingested")
    if args.enqueue:
        for doc_id in todo:
            enqueue_document(doc_id)
    bar = tqdm(total=len(docs), desc=f"ingest -> {name}", unit="doc", disable=args.quiet)
    pending = set(docs)
    while pending:
        if not args.enqueue:  # process here, one after the other, with the same code the workers run
            doc_id = min(pending)
            try:
                pipeline.process_document(doc_id, schedule_compaction=False)
            except Exception as e:  # noqa: BLE001  one bad file must not stop the batch (as in a worker)
                pipeline.fail_document(doc_id, f"Processing failed: {type(e).__name__}: {e}")
        with session_scope() as s:
            rows = s.exec(select(Document).where(Document.id.in_(list(pending)))).all()
            for d in rows:
                if d.status in (DocStatus.ready, DocStatus.failed, DocStatus.cancelled):
                    pending.discard(d.id)
                    bar.update(1)
                    ready += d.status == DocStatus.ready
                    if d.status != DocStatus.ready:
                        failures += 1
                        tqdm.write(f"{d.status} {d.filename}: {d.error}")
                    else:
                        for notice in d.notices:  # ready, but not all of it could be read
                            tqdm.write(f"{d.filename}: {notice}")
            pending -= pending - {d.id for d in rows}  # deleted meanwhile
        if pending and args.enqueue:
            time.sleep(0.5)
    bar.close()
    if not args.enqueue:
        pipeline.compact_collection(cid)  # merges the per-document segments when there are many
    print(f"{ready} ready, {failures} failed or rejected")
    return 1 if failures else 0


def _reembed(args: argparse.Namespace) -> int:
    from sqlmodel import select
    from tqdm import tqdm

    from app.db import migrate, session_scope
    from app.models import Collection
    from ingest import pipeline

    migrate()
    with session_scope() as s:
        coll = s.exec(select(Collection).where(Collection.name == args.collection.strip())).first()
        cid = coll.id if coll is not None else None
    if cid is None:
        print(f"error: no collection named {args.collection!r}", file=sys.stderr)
        return 2
    bar = tqdm(desc="re-embed", unit="chunk", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    n = pipeline.reembed_collection(cid, progress=progress)
    bar.close()
    print(f"{n} chunks of {args.collection!r} re-embedded with {pipeline._embedder().name}")
    return 0


OWN_COMMANDS = ("serve", "worker", "create-admin", "ingest", "migrate", "reembed")
# commands that print their own results; their log shows warnings and errors unless AUTOGLM_LOG_LEVEL is set
QUIET_COMMANDS = ("create-admin", "ingest", "migrate", "reembed")


def build_parser(with_inference: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoglm", description="Open-AutoGLM: enterprise question answering.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run migrations, the API and (embedded) a Celery worker")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--model", default=None, help="GLM-4 checkpoint directory (AUTOGLM_MODEL_PATH)")
    s.add_argument("--no-worker", action="store_true", help="do not start the embedded worker")
    s.set_defaults(func=_serve)

    w = sub.add_parser("worker", help="run a Celery worker against AUTOGLM_BROKER_URL / AUTOGLM_REDIS_URL")
    w.add_argument("--concurrency", type=int, default=1, help="worker processes (prefork pool on Redis)")
    w.add_argument("--name", default=None, help="Celery node name (default autoglm@%%h)")
    w.set_defaults(func=_worker)

    a = sub.add_parser(
        "create-admin", help="create an admin user (or a new key for it) and print the API key"
    )
    a.add_argument("--name", default="admin")
    a.add_argument(
        "--password",
        action="store_true",
        help="also set a password for browser sign-in (read from AUTOGLM_ADMIN_PASSWORD, else prompted)",
    )
    a.set_defaults(func=_create_admin)

    i = sub.add_parser("ingest", help="ingest files and folders into a collection (created if missing)")
    i.add_argument("paths", nargs="+", metavar="PATH")
    i.add_argument("--collection", required=True, metavar="NAME")
    i.add_argument("--enqueue", action="store_true", help="hand the documents to running workers and wait")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_ingest)

    m = sub.add_parser("migrate", help="bring the database schema to the newest revision")
    m.set_defaults(func=_migrate)

    r = sub.add_parser(
        "reembed",
        help="embed a collection's chunks again with the configured embedding model (after changing it)",
    )
    r.add_argument("collection", metavar="NAME")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_reembed)

    if with_inference:
        from inference.cli import register  # generate, chat (imports torch: only when asked for)

        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else argv
    reload_settings()
    level = settings.log_level
    if argv and argv[0] in QUIET_COMMANDS and "log_level" not in Settings().model_fields_set:
        # a command that reports what it did itself: the libraries' INFO lines (alembic's plugin set-up,
        # faiss's loader, each segment written) and the weights' loading bar buried that report
        level = "WARNING"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # also for loggers that set a level of their own (bm25s: DEBUG)
    args = build_parser(with_inference=not argv or argv[0] not in OWN_COMMANDS).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
