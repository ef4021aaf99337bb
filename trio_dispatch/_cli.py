"""The ``trio-dispatch`` command: run the embedded server, and manage dispatches.

People type times, durations and targets the way they think of them (``in 1h30m``,
``15m``, ``battery:li_ion``); scripts want JSON and exit codes they can rely on. This
module is the translation between the two and the public API (`open_client`,
`serve_dispatch_api`); it holds no dispatch logic of its own. Here are the click group,
its parameter types, options and commands; the pure parsing of input is in
`_cli_input`, the pure formatting of output in `_cli_output`.

Rules:

1. Parsing is done by small pure functions (``parse_*`` in `_cli_input`) that raise
   `ValueError` with a message fit for the user; click reports it against the option it
   came from, as a usage error (exit 2). Times are relative to a ``now`` passed in, so
   they are testable.
2. Naive ISO 8601 times are UTC, like every time of the dispatch API; an offset such
   as ``+02:00`` gives a time in another zone.
3. Every command runs its async body in one `trio.run`. Errors end the command with
   one ``error: ...`` line on stderr and no traceback: exit 1 when the server said no
   (`DispatchApiError`), 2 when it could not be reached (`DispatchConnectionError`) or
   the input was bad (a click usage error), 130 when interrupted.
4. Long-running commands (``serve``, ``stream``) stop on SIGINT or SIGTERM by cancelling
   their nursery, and then exit 0.
5. ``--json`` output uses the model's field names, ISO 8601 UTC times ending in ``Z``,
   durations in seconds, and enum names in upper case (`_cli_output`).

More commands join the `cli` group with ``@cli.command()``; `main` is the entry point.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeVar

import click
import trio
from click.core import ParameterSource

from ._cli_input import (
    default_database_path,
    parse_duration,
    parse_ids,
    parse_int_list,
    parse_months,
    parse_payload,
    parse_target,
    parse_time,
    parse_weekdays,
)
from ._cli_output import dispatch_to_json, format_record, format_stream_line, format_table
from ._client import DispatchClient, SortField, SortOrder, open_client, system_clock
from ._exceptions import DispatchApiError, DispatchConnectionError, InvalidDispatchError
from ._model import Dispatch
from ._payload import Payload
from ._rule import EndCriteria, Frequency, RecurrenceRule, Weekday
from ._target import Target
from ._url import parse_server_url
from .server._keys import ApiKey, KeyRing
from .server._serve import serve_dispatch_api
from .server._store import StoreError

__all__ = ["cli", "main"]

T = TypeVar("T")

_log = logging.getLogger("trio_dispatch.cli")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 50051
DEFAULT_URL: Final = f"grpc://{DEFAULT_HOST}:{DEFAULT_PORT}?ssl=false"
"""Where client commands connect unless told otherwise: a default ``serve``."""

EXIT_API: Final = 1
EXIT_CONNECTION: Final = 2
EXIT_INTERRUPTED: Final = 130


# -- running async bodies -------------------------------------------------------------


class CliError(click.ClickException):
    """A failure reported as one ``error: ...`` line on stderr (exit 1)."""

    exit_code = EXIT_API

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line."""
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class ConnectionFailedError(CliError):
    """The server could not be reached, or the connection broke (exit 2)."""

    exit_code = EXIT_CONNECTION


class InterruptedCommandError(CliError):
    """Stopped by SIGINT before the command finished (exit 130)."""

    exit_code = EXIT_INTERRUPTED


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


ErrorMapper = Callable[[BaseException], click.ClickException | None]


def _client_error(exc: BaseException) -> click.ClickException | None:
    if isinstance(exc, DispatchApiError):
        return CliError(f"{exc.status}: {exc.message}")
    if isinstance(exc, DispatchConnectionError):
        return ConnectionFailedError(f"connection to the dispatch server failed: {exc}")
    if isinstance(exc, InvalidDispatchError):
        return CliError(str(exc))
    if isinstance(exc, ValueError | TypeError):  # the library refused an argument
        return click.UsageError(str(exc), click.get_current_context(silent=True))
    return None


def _run(async_fn: Callable[[], Awaitable[None]], mapper: ErrorMapper = _client_error) -> None:
    """`trio.run` the body; turn the errors users cause or meet into one-line reports."""
    try:
        trio.run(async_fn)
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            raise InterruptedCommandError("interrupted") from None
        for leaf in leaves:
            # click reports its own exceptions, and ends quietly on a closed stdout pipe
            # (`trio-dispatch stream | head`), but only if they arrive unwrapped.
            if isinstance(leaf, click.ClickException | BrokenPipeError):
                raise leaf from None
            mapped = mapper(leaf)
            if mapped is not None:
                raise mapped from None
        raise


async def _cancel_on_signal(
    scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Cancel `scope` on the first SIGINT or SIGTERM (a clean stop, not an error)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            _log.info("received %s, stopping", signal.Signals(signum).name)
            scope.cancel()
            return


# -- the group ------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="trio-dispatch", prog_name="trio-dispatch")
def cli() -> None:
    """Run a dispatch server, and create, inspect and follow dispatches.

    Client commands connect to --url (default: a local `trio-dispatch serve`) with an
    API key. Times are 'now', 'in 1h30m', '2h ago' or ISO 8601 (UTC unless an offset is
    given); durations are like 90s, 15m, 1h30m, 2d, or 'none'.
    """


def main() -> None:
    """Entry point of the ``trio-dispatch`` script and of ``python -m trio_dispatch``."""
    cli(prog_name="trio-dispatch")


# -- click parameter types ------------------------------------------------------------


class _Parsed(click.ParamType[Any]):
    """A click type around one of the ``parse_*`` functions."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse `value`, reporting a `ValueError` against the option."""
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _time(text: str) -> datetime:
    return parse_time(text, now=system_clock())


def _start(text: str) -> datetime | Literal["now"]:
    return "now" if text.strip().lower() == "now" else _time(text)


def _new_start(text: str) -> datetime:
    if text.strip().lower() == "now":
        raise ValueError(
            "an update cannot start a dispatch 'now': the time would be past when the "
            "server checks it; give a time ahead, like 'in 1m'"
        )
    return _time(text)


def _payload_argument(text: str) -> Payload:
    if text.startswith("@"):  # @file, or @- for stdin
        name = text[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {name!r}: {exc}") from None
    return parse_payload(text)


def _uint64(text: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", text) or int(text) >= 2**64:
        raise ValueError(f"{text!r} is not an id (a whole number >= 0)")
    return int(text)


MICROGRID: Final = _Parsed("id", _uint64)
TIME: Final = _Parsed("time", _time)
START: Final = _Parsed("time", _start)
NEW_START: Final = _Parsed("time", _new_start)
DURATION: Final = _Parsed("duration", parse_duration)
TARGET: Final = _Parsed("target", parse_target)
PAYLOAD: Final = _Parsed("json", _payload_argument)
IDS: Final = _Parsed("ids", lambda text: parse_ids([text]))
MINUTES: Final = _Parsed("minutes", lambda t: parse_int_list(t, allowed=range(60), what="0..59"))
HOURS: Final = _Parsed("hours", lambda t: parse_int_list(t, allowed=range(24), what="0..23"))
WEEKDAYS: Final = _Parsed("days", parse_weekdays)
MONTHDAYS: Final = _Parsed(
    "days",
    lambda t: parse_int_list(
        t, allowed=frozenset([*range(-31, 0), *range(1, 32)]), what="1..31 or -31..-1"
    ),
)
MONTHS: Final = _Parsed("months", parse_months)
FREQUENCY: Final = click.Choice(
    [f.name.lower() for f in Frequency if f is not Frequency.UNSPECIFIED], case_sensitive=False
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _options(*decorators: Decorator) -> Decorator:
    """Apply option decorators in the order written (help lists them that way)."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source is not ParameterSource.DEFAULT


# -- client commands ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Connection:
    """Where and as whom client commands connect, and which microgrid they act on."""

    url: str
    key: str
    sign_secret: str | None
    microgrid: int


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_server_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


def _check_not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value:
        raise click.BadParameter("must not be empty", ctx, param)
    return value


def _with_connection(f: Callable[..., None]) -> Callable[..., None]:
    """Add the connection options to a command, which receives them as `conn`."""

    @functools.wraps(f)
    def command(
        *, url: str, key: str, sign_secret: str | None, microgrid: int, **kwargs: Any
    ) -> None:
        conn = Connection(url=url, key=key, sign_secret=sign_secret, microgrid=microgrid)
        f(conn, **kwargs)

    return _options(
        click.option("-m", "--microgrid", type=MICROGRID, required=True, help="The microgrid id."),
        click.option(
            "--url",
            envvar="DISPATCH_API_URL",
            default=DEFAULT_URL,
            show_default=True,
            show_envvar=True,
            callback=_check_url,
            help="Server URL: grpc://host[:port][?ssl=false&...].",
        ),
        click.option(
            "--key",
            envvar="DISPATCH_API_KEY",
            required=True,
            show_envvar=True,
            callback=_check_not_empty,
            help="API key.",
        ),
        click.option(
            "--sign-secret",
            envvar="DISPATCH_API_SIGN_SECRET",
            show_envvar=True,
            callback=_check_not_empty,
            help="Sign every request with this secret.",
        ),
    )(command)


def _run_client(conn: Connection, work: Callable[[DispatchClient], Awaitable[None]]) -> None:
    async def body() -> None:
        async with open_client(
            server_url=conn.url, key=conn.key, sign_secret=conn.sign_secret
        ) as client:
            await work(client)

    _run(body)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def _show(dispatch: Dispatch, as_json: bool) -> None:
    if as_json:
        _echo_json(dispatch_to_json(dispatch))
    else:
        click.echo(format_record(dispatch))


_JSON_OPTION: Final = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text."
)

_RULE_PARTS: Final = (
    "interval",
    "count",
    "until",
    "by_minute",
    "by_hour",
    "by_weekday",
    "by_monthday",
    "by_month",
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flatten(groups: Iterable[Iterable[T]]) -> tuple[T, ...]:
    return tuple(item for group in groups for item in group)


_RECURRENCE_OPTIONS: Final = _options(
    click.option("--frequency", type=FREQUENCY, help="Repeat the dispatch this often."),
    click.option(
        "--interval",
        type=click.IntRange(1),
        metavar="N",
        help="Repeat every N periods of --frequency.",
    ),
    click.option("--count", type=click.IntRange(1), metavar="N", help="End after N runs."),
    click.option("--until", type=TIME, help="End before this time (no run starts at or after)."),
    click.option("--by-minute", multiple=True, type=MINUTES, help="Minutes 0..59, e.g. 0,30."),
    click.option("--by-hour", multiple=True, type=HOURS, help="Hours 0..23, e.g. 8,20 or 9-17."),
    click.option(
        "--by-weekday", multiple=True, type=WEEKDAYS, help="Weekdays, e.g. mon,fri or mon-fri."
    ),
    click.option(
        "--by-monthday", multiple=True, type=MONTHDAYS, help="Days of month, e.g. 1,15,-1."
    ),
    click.option("--by-month", multiple=True, type=MONTHS, help="Months, e.g. 1,7 or jun-aug."),
)


def _end_criteria(count: int | None, until: datetime | None) -> EndCriteria | None:
    if count is not None and until is not None:
        raise click.UsageError("--count and --until cannot be used together")
    if count is not None:
        return EndCriteria(count=count)
    if until is not None:
        return EndCriteria(until=until)
    return None


@cli.command()
@click.option("-t", "--type", "type_", required=True, help="The dispatch type, e.g. DEMO.")
@click.option(
    "--start",
    type=START,
    default="now",
    show_default=True,
    help="First start; 'now' is the server's now.",
)
@click.option(
    "--duration",
    type=DURATION,
    required=True,
    help="Length of each run, e.g. 15m; 'none' runs until changed.",
)
@click.option("--target", type=TARGET, help="Component ids (1,2) or categories (battery:li_ion).")
@click.option("--payload", type=PAYLOAD, help="Actor parameters: a JSON object, or @FILE.")
@click.option("--active/--inactive", default=True, show_default=True, help="Whether it may run.")
@click.option("--dry-run/--no-dry-run", default=False, show_default=True, help="Actors only log.")
@_RECURRENCE_OPTIONS
@_JSON_OPTION
@_with_connection
def create(
    conn: Connection,
    *,
    type_: str,
    start: datetime | Literal["now"],
    duration: timedelta | None,
    target: Target | None,
    payload: Payload | None,
    active: bool,
    dry_run: bool,
    frequency: str | None,
    interval: int | None,
    count: int | None,
    until: datetime | None,
    by_minute: tuple[tuple[int, ...], ...],
    by_hour: tuple[tuple[int, ...], ...],
    by_weekday: tuple[tuple[Weekday, ...], ...],
    by_monthday: tuple[tuple[int, ...], ...],
    by_month: tuple[tuple[int, ...], ...],
    as_json: bool,
) -> None:
    """Create a dispatch and print it as stored."""
    ctx = click.get_current_context()
    recurrence: RecurrenceRule | None = None
    if frequency is None:
        if given := [_flag(name) for name in _RULE_PARTS if _given(ctx, name)]:
            raise click.UsageError(f"{', '.join(given)} needs --frequency")
    else:
        try:
            recurrence = RecurrenceRule(
                frequency=Frequency[frequency.upper()],
                interval=1 if interval is None else interval,
                end_criteria=_end_criteria(count, until),
                byminutes=_flatten(by_minute),
                byhours=_flatten(by_hour),
                byweekdays=_flatten(by_weekday),
                bymonthdays=_flatten(by_monthday),
                bymonths=_flatten(by_month),
            )
        except (ValueError, TypeError) as exc:
            raise click.UsageError(str(exc)) from None

    async def work(client: DispatchClient) -> None:
        created = await client.create(
            conn.microgrid,
            type=type_,
            start_time=start,
            duration=duration,
            target=target,
            active=active,
            dry_run=dry_run,
            payload=payload,
            recurrence=recurrence,
        )
        _show(created, as_json)

    _run_client(conn, work)


@cli.command()
@click.argument("dispatch_id", metavar="ID", type=click.IntRange(0, 2**64 - 1))
@_JSON_OPTION
@_with_connection
def get(conn: Connection, *, dispatch_id: int, as_json: bool) -> None:
    """Print one dispatch."""

    async def work(client: DispatchClient) -> None:
        _show(await client.get(conn.microgrid, dispatch_id), as_json)

    _run_client(conn, work)


def _refuse_update(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        raise click.BadParameter(
            "the dispatch API cannot change this after creation; delete the dispatch and "
            "create it again",
            ctx,
            param,
        )
    return value


@cli.command()
@click.argument("dispatch_id", metavar="ID", type=click.IntRange(0, 2**64 - 1))
@click.option("--start", type=NEW_START, help="New first start (not in the past).")
@click.option("--duration", type=DURATION, help="New run length; 'none' runs until changed.")
@click.option("--target", type=TARGET, help="New target: ids or categories.")
@click.option("--payload", type=PAYLOAD, help="New payload (replaces it): JSON object or @FILE.")
@click.option("--active/--inactive", default=None, help="Allow or stop its runs.")
@_RECURRENCE_OPTIONS
@click.option("--no-recurrence", is_flag=True, help="Make it a one-off (clear the rule).")
@click.option("--no-end", is_flag=True, help="Repeat without end (clear --count/--until).")
@click.option("-t", "--type", "type_", hidden=True, callback=_refuse_update, expose_value=False)
@click.option(
    "--dry-run/--no-dry-run", default=None, hidden=True, callback=_refuse_update, expose_value=False
)
@_JSON_OPTION
@_with_connection
def update(
    conn: Connection,
    *,
    dispatch_id: int,
    start: datetime | None,
    duration: timedelta | None,
    target: Target | None,
    payload: Payload | None,
    active: bool | None,
    frequency: str | None,
    interval: int | None,
    count: int | None,
    until: datetime | None,
    by_minute: tuple[tuple[int, ...], ...],
    by_hour: tuple[tuple[int, ...], ...],
    by_weekday: tuple[tuple[Weekday, ...], ...],
    by_monthday: tuple[tuple[int, ...], ...],
    by_month: tuple[tuple[int, ...], ...],
    no_recurrence: bool,
    no_end: bool,
    as_json: bool,
) -> None:
    """Change the given fields of a dispatch; print it as updated.

    Only the options given are sent. A by-option replaces that list of the rule
    ('none' empties it); other parts of the rule are kept.
    """
    ctx = click.get_current_context()
    changes: dict[str, Any] = {}
    if start is not None:
        changes["start_time"] = start
    if _given(ctx, "duration"):
        changes["duration"] = duration
    for name, value in (("target", target), ("payload", payload), ("active", active)):
        if value is not None:
            changes[name] = value
    rule_parts = [_flag(n) for n in ("frequency", *_RULE_PARTS, "no_end") if _given(ctx, n)]
    if no_recurrence:
        if rule_parts:
            raise click.UsageError(f"--no-recurrence cannot be used with {', '.join(rule_parts)}")
        changes["recurrence"] = None
    if no_end and (count is not None or until is not None):
        raise click.UsageError("--no-end cannot be used with --count or --until")
    if frequency is not None:
        changes["frequency"] = Frequency[frequency.upper()]
    if interval is not None:
        changes["interval"] = interval
    if no_end:
        changes["end_criteria"] = None
    elif count is not None or until is not None:
        changes["end_criteria"] = _end_criteria(count, until)
    for name, arg, groups in (
        ("by_minute", "byminutes", by_minute),
        ("by_hour", "byhours", by_hour),
        ("by_weekday", "byweekdays", by_weekday),
        ("by_monthday", "bymonthdays", by_monthday),
        ("by_month", "bymonths", by_month),
    ):
        if _given(ctx, name):
            changes[arg] = _flatten(groups)
    if not changes:
        raise click.UsageError("nothing to update: give at least one field to change")

    async def work(client: DispatchClient) -> None:
        _show(await client.update(conn.microgrid, dispatch_id, **changes), as_json)

    _run_client(conn, work)


@cli.command()
@click.argument("ids", metavar="ID...", nargs=-1, required=True, type=IDS)
@_JSON_OPTION
@_with_connection
def delete(conn: Connection, *, ids: tuple[tuple[int, ...], ...], as_json: bool) -> None:
    """Delete dispatches by id; ranges like 3-7 include both ends.

    Ids that do not exist are reported together at the end (exit 1); the others are
    deleted anyway. Any other refusal stops at once.
    """
    wanted = parse_ids([",".join(str(i) for i in _flatten(ids))])

    async def work(client: DispatchClient) -> None:
        deleted: list[int] = []
        missing: list[int] = []
        for dispatch_id in wanted:
            try:
                await client.delete(conn.microgrid, dispatch_id)
            except DispatchApiError as exc:
                if exc.status != "NOT_FOUND":
                    raise
                missing.append(dispatch_id)
                continue
            deleted.append(dispatch_id)
            if not as_json:
                click.echo(f"deleted {dispatch_id}")
        if as_json:
            _echo_json({"deleted": deleted, "not_found": missing})
        if missing:
            raise CliError(
                f"NOT_FOUND: no dispatch {', '.join(map(str, missing))} in microgrid "
                f"{conn.microgrid}"
            )

    _run_client(conn, work)


_SORT_FIELDS: Final = {
    "create": SortField.CREATE_TIME,
    "start": SortField.START_TIME,
    "update": SortField.UPDATE_TIME,
}
_SORT_ORDERS: Final = {"asc": SortOrder.ASCENDING, "desc": SortOrder.DESCENDING}


@cli.command("list")
@click.argument("queries", metavar="[QUERY]...", nargs=-1)
@click.option("--query", "more_queries", multiple=True, help="Type substring, or #ID.")
@click.option("--target", "targets", multiple=True, type=TARGET, help="Shares ids or categories.")
@click.option("--id", "ids", multiple=True, type=IDS, help="Only these ids (ranges like 3-7).")
@click.option("--active/--inactive", default=None, help="Only active / inactive ones.")
@click.option("--dry-run/--no-dry-run", default=None, help="Only dry runs / real ones.")
@click.option("--recurring/--one-off", default=None, help="Only recurring / one-off ones.")
@click.option("--start-from", type=TIME, help="First start at or after this time.")
@click.option("--start-to", type=TIME, help="First start before this time.")
@click.option("--end-from", type=TIME, help="Last run ends at or after this time.")
@click.option("--end-to", type=TIME, help="Last run ends before this time.")
@click.option("--update-from", type=TIME, help="Last changed at or after this time.")
@click.option("--update-to", type=TIME, help="Last changed before this time.")
@click.option("--sort", type=click.Choice(list(_SORT_FIELDS)), default="create", show_default=True)
@click.option("--order", type=click.Choice(list(_SORT_ORDERS)), default="desc", show_default=True)
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    metavar="N",
    default=1000,
    show_default=True,
    help="Dispatches per request (all pages are fetched).",
)
@_JSON_OPTION
@_with_connection
def list_(
    conn: Connection,
    *,
    queries: tuple[str, ...],
    more_queries: tuple[str, ...],
    targets: tuple[Target, ...],
    ids: tuple[tuple[int, ...], ...],
    active: bool | None,
    dry_run: bool | None,
    recurring: bool | None,
    start_from: datetime | None,
    start_to: datetime | None,
    end_from: datetime | None,
    end_to: datetime | None,
    update_from: datetime | None,
    update_to: datetime | None,
    sort: str,
    order: str,
    page_size: int,
    as_json: bool,
) -> None:
    """List the dispatches that match every filter given.

    A QUERY matches a part of the type (ignoring case), or the id with #ID. Within a
    repeated option any value may match. Time filters include from and exclude to.
    """

    async def work(client: DispatchClient) -> None:
        listing = client.list(
            conn.microgrid,
            targets=targets,
            active=active,
            dry_run=dry_run,
            recurring=recurring,
            start_from=start_from,
            start_to=start_to,
            end_from=end_from,
            end_to=end_to,
            update_from=update_from,
            update_to=update_to,
            dispatch_ids=_flatten(ids),
            queries=(*queries, *more_queries),
            sort_by=_SORT_FIELDS[sort],
            sort_order=_SORT_ORDERS[order],
            page_size=page_size,
        )
        found = [dispatch async for dispatch in listing]
        if as_json:
            _echo_json([dispatch_to_json(d) for d in found])
        elif found:
            click.echo(format_table(found))
        else:
            click.echo("no dispatches match", err=True)

    _run_client(conn, work)


@cli.command()
@_JSON_OPTION
@_with_connection
def stream(conn: Connection, *, as_json: bool) -> None:
    """Print each change to the microgrid's dispatches as it happens.

    One line per event (created, updated, deleted); with --json, a JSON object with
    "event" and "dispatch". Runs until interrupted (SIGINT/SIGTERM, exit 0) or until
    the server ends the stream.
    """

    async def work(client: DispatchClient) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(_cancel_on_signal, nursery.cancel_scope)
            async with client.stream(conn.microgrid) as events:
                click.echo(f"following microgrid {conn.microgrid}; stop with Ctrl-C", err=True)
                async for item in events:
                    click.echo(format_stream_line(item, as_json))
            click.echo("the server ended the stream", err=True)
            nursery.cancel_scope.cancel()

    _run_client(conn, work)


# -- serve ----------------------------------------------------------------------------


def _check_keys(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    if not all(value):
        raise click.BadParameter("must not be empty", ctx, param)
    return value


def _read_keys_file(
    ctx: click.Context, param: click.Parameter, value: Path | None
) -> tuple[ApiKey, ...]:
    if value is None:
        return ()
    try:
        ring = KeyRing.from_toml(value)
    except (OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise click.BadParameter(str(exc), ctx, param) from None
    # KeyRing has no public way to list its keys, and --key adds to them.
    return tuple(ring._keys.values())


def _serve_error(database: str) -> ErrorMapper:
    def mapper(exc: BaseException) -> click.ClickException | None:
        if isinstance(exc, StoreError):
            return CliError(f"cannot use the database: {exc}")
        if isinstance(exc, sqlite3.Error):
            return CliError(f"database {database}: {exc}")
        if isinstance(exc, OSError):
            return CliError(f"cannot start the server: {exc}")
        return None

    return mapper


@cli.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the log says which).",
)
@click.option(
    "--database",
    help="SQLite file to keep dispatches in, or :memory:.",
    show_default="$XDG_DATA_HOME/trio-dispatch/dispatches.sqlite3",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    callback=_check_keys,
    help="An API key for every microgrid; repeatable.",
)
@click.option(
    "--keys-file",
    "file_keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=_read_keys_file,
    help="TOML file of keys, their microgrids and signing secrets.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate chain (with --tls-key); without, plain HTTP/2.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
def serve(
    *,
    host: str,
    port: int,
    database: str | None,
    keys: tuple[str, ...],
    file_keys: tuple[ApiKey, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Run the embedded dispatch server until SIGINT or SIGTERM.

    Clients connect with --url grpc://HOST:PORT?ssl=false (or ssl=true with TLS).
    """
    if not keys and not file_keys:
        raise click.UsageError(
            "give at least one --key or a --keys-file with keys: "
            "without keys the server refuses every call"
        )
    ring = KeyRing([*file_keys, *(ApiKey(key=key) for key in keys)])
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key must be given together")
    if database is None:
        path = default_database_path(os.environ, Path.home())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create {path.parent}: {exc}") from None
        database = str(path)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # grpclib logs every call a client cancels (e.g. a closed stream) at INFO: routine.
    logging.getLogger("grpclib").setLevel(logging.WARNING)
    _log.info("database %s, %d API key(s)", database, len(ring))

    async def body() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(_cancel_on_signal, nursery.cancel_scope)
            await nursery.start(
                functools.partial(
                    serve_dispatch_api,
                    keys=ring,
                    host=host,
                    port=port,
                    database=database,
                    tls_cert=tls_cert,
                    tls_key=tls_key,
                )
            )
        _log.info("stopped")

    _run(body, _serve_error(database))


# -- the live view -----------------------------------------------------------------------

_ANSI_OPTION = click.option(
    "--ansi/--plain",
    default=None,
    help="Redraw in place with colours, or print one line per event "
    "(default: redraw when standard output is a terminal).",
)


@cli.command()
@_ANSI_OPTION
@_with_connection
def watch(conn: Connection, *, ansi: bool | None) -> None:
    """Show a microgrid's dispatches live, updated on every event. Ctrl-C stops.

    A table of the dispatches with each one's running state, next start and end, and
    the log of the latest events.
    """
    from ._demo import main_watch  # noqa: PLC0415  (the live view loads only when used)

    sys.exit(main_watch(conn.url, conn.key, conn.microgrid, conn.sign_secret, ansi))


@cli.command()
@_ANSI_OPTION
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
def demo(ansi: bool | None, duration: float | None) -> None:
    """Start an embedded server with demo dispatches and watch them run. Ctrl-C stops.

    Some dispatches recur every minute, so something starts or stops every few seconds;
    an operator task keeps changing them so that lifecycle events show up too.
    """
    from ._demo import main_demo  # noqa: PLC0415  (the live view loads only when used)

    sys.exit(main_demo(duration=duration, ansi=ansi))
