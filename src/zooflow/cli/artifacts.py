"""``zooflow artifacts``: list, show, lineage, verify, alias, gc."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from zooflow import storecheck
from zooflow.cli.common import JsonOpt, StoreOpt, artifacts_app, err, fail, failing, open_existing, out
from zooflow.errors import ConfigError, DamagedRecordError
from zooflow.records import VersionRecord
from zooflow.store import REPAIR_HINT, Store, open_store


def _rows(st: Store, name: str) -> tuple[list[VersionRecord], list[str]]:
    """Readable version records of names containing `name`, and the damaged records found on the way."""
    rows: list[VersionRecord] = []
    damaged: list[str] = []
    for n in st.names():
        if name not in n:
            continue
        try:
            rows += st.versions(n)
        except DamagedRecordError as exc:
            readable, bad = st._version_records(n)
            rows += readable
            damaged += [path for _, path in bad] or [exc.problem]
    return rows, damaged


@artifacts_app.command("list")
def artifacts_list(
    name: Annotated[str, typer.Argument(help="only names containing this text")] = "",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List logical artifacts with their versions and aliases (damaged records are named; exit 1 if any)."""
    with failing(as_json):
        st = open_existing(store)
        rows, damaged = _rows(st, name)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows]))
    else:
        table = Table("name", "version", "kind", "digest", "created", "aliases", title=f"store {st.url}")
        for r in rows:
            table.add_row(r.name, str(r.version), r.kind, r.digest[:16], r.created, ", ".join(r.aliases))
        out.print(table)
    for path in damaged:
        err.print(f"[red]damaged record[/] {path} (not listed)", highlight=False)
    if damaged:
        err.print(f"[bold]fix:[/] {REPAIR_HINT}", highlight=False)
        raise typer.Exit(1)


@artifacts_app.command("show")
def artifacts_show(
    ref: Annotated[str, typer.Argument(help="name, name@VERSION, name@ALIAS, digest or digest prefix")],
    store: StoreOpt = None,
) -> None:
    """Print an artifact's manifest (JSON)."""
    with failing():
        st = open_existing(store)
        found = st.resolve(ref)
        manifest = st.manifest(found.digest)
    doc = manifest.model_dump(mode="json")
    doc["ref"] = {"name": found.name, "version": found.version, "location": st.object_dir(found.digest)}
    print(json.dumps(doc, indent=2))


@artifacts_app.command("lineage")
def artifacts_lineage(
    ref: Annotated[str, typer.Argument(help="name, name@VERSION, digest or digest prefix")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what an artifact was made from, recursively."""
    with failing(as_json):
        st = open_existing(store)
        found = st.resolve(ref)
        tree = st.lineage(found.digest)
    if as_json:
        print(json.dumps(tree))
        return

    def label(node: dict[str, Any]) -> str:
        status = " [red](missing)[/]" if node.get("missing") else ""
        status += " [red](damaged manifest)[/]" if node.get("damaged") else ""
        return f"{node['role']}: {node.get('kind', '?')} [dim]{node['digest'][:16]}[/] {node.get('stage', '')}{status}"

    def add(parent: Tree, node: dict[str, Any]) -> None:
        for child in node.get("inputs", []):
            add(parent.add(label(child)), child)

    root = Tree(label(tree))
    add(root, tree)
    out.print(root)


@artifacts_app.command("verify")
def artifacts_verify(
    ref: Annotated[str | None, typer.Argument(help="one artifact; default: the whole store")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="re-hash every byte, whatever the stat stamps (finds bit rot)")
    ] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check artifacts against their manifests (and, for the whole store, every record); exit 1 if anything is wrong.

    Without --full a file whose stat stamp (size, mtime, ctime, inode) is unchanged since its last
    clean re-hash is trusted, as a cache hit does; --full re-hashes everything.
    """
    with failing(as_json):
        st = open_existing(store)
        if ref:
            digest = st.resolve(ref).digest
            found = storecheck.Audit(checked=1)
            problems = st.verify(digest, full=full)
            if problems:
                found.damaged[digest] = problems
        else:
            found = storecheck.audit(st, full=full)
    if as_json:
        print(json.dumps(found.as_dict()))
    else:
        for line in found.lines():
            err.print(f"[red]{line}[/]", highlight=False)
        bad = len(found.damaged)
        err.print(
            f"{found.checked - bad} of {found.checked} artifact(s) intact"
            + (" (every byte re-hashed)" if full else " (unchanged files trusted by stat stamp; --full re-hashes all)"),
            highlight=False,
        )
        if found.in_flight:
            err.print(
                f"{len(found.in_flight)} object(s) without a manifest yet, changed in the last hour: "
                "uploads in progress (maybe on another host), not checked",
                highlight=False,
            )
        if not found.ok:
            err.print(f"[bold]fix:[/] {REPAIR_HINT}", highlight=False)
    if not found.ok:
        raise typer.Exit(1)


@artifacts_app.command("alias")
def artifacts_alias(
    ref: Annotated[str, typer.Argument(help="name@VERSION (or name for the latest)")],
    alias: Annotated[str, typer.Argument(help="alias to set, e.g. nightly-2026-11-28 or good")],
    store: StoreOpt = None,
) -> None:
    """Point an alias of a logical name at one of its versions."""
    with failing():
        st = open_existing(store)
        st.require_writable("zooflow artifacts alias")
        found = st.resolve(ref)
        if found.name is None or found.version is None:
            raise ConfigError(f"{ref!r} is a bare digest", "name the artifact as name@VERSION to alias it")
        st.set_alias(found.name, alias, found.version)
    err.print(f"{found.name}@{alias} -> version {found.version}", highlight=False)


@artifacts_app.command("gc", epilog="zooflow artifacts gc\n\nzooflow artifacts gc --apply --from /backup/zooflow-store")
def artifacts_gc(
    apply: Annotated[bool, typer.Option("--apply", help="do it (default: only show what would be done)")] = False,
    full: Annotated[bool, typer.Option("--full", help="re-hash every byte to find damage")] = False,
    sources: Annotated[
        list[str] | None,
        typer.Option("--from", help="another store to take intact copies of damaged artifacts from (repeatable)"),
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Clean up the store: staging of dead runs, unreferenced objects, damaged objects and records.

    Damaged artifacts are repaired from intact copies of their files (in this store or a --from
    store), or moved to <store>/quarantine/ so the next run recomputes them; damaged version
    records are rebuilt from the cache records that name them, or moved aside. Dry run by default.
    """
    with failing(as_json):
        st = open_existing(store)
        if apply:
            st.require_writable("zooflow artifacts gc --apply")
        others = [open_store(s, create=False) for s in sources or []]
        actions = storecheck.plan_gc(st, full=full, sources=others)
        if apply:
            storecheck.apply_gc(st, actions, sources=others)
    if as_json:
        print(storecheck.describe(actions))
        return
    for action in actions:
        err.print(action.line(), highlight=False)
    freed = sum(a.size for a in actions if a.kind in ("staging", "download", "unreferenced") and (a.done or not apply))
    if not actions:
        err.print("nothing to do: the store is clean", highlight=False)
    elif apply:
        failed = [a for a in actions if a.error]
        err.print(
            f"{len(actions) - len(failed)} of {len(actions)} action(s) done; {freed / 2**20:.1f} MiB freed",
            highlight=False,
        )
        if failed:
            fail(ConfigError(f"{len(failed)} action(s) failed (see above)", "fix the cause and run gc again"))
    else:
        err.print(
            f"{len(actions)} action(s) would free {freed / 2**20:.1f} MiB; run again with --apply to do them",
            highlight=False,
        )
