"""Presets: the seeded system presets and each account's custom ones, validated against codecs.

A custom preset's `target_format` names a container and up to one video and one audio codec; each
codec choice names one of the codec's profiles, a number of passes and capability values ("caps")
that must lie inside what that profile offers. Capabilities follow the codecs' array convention:
a two-number array is a [min, max] range, any other array the set of allowed values.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from leaktrace.ids import is_id, new_id, now_ms
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.listing import Page, Sort, fetch_page
from leaktrace.store.models import Codec, Job, Preset

TYPES = ("system", "custom")
SLOTS = (("vcodec", "video"), ("acodec", "audio"))

SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Preset.id,
    "created_at": Preset.created_at,
    "updated_at": Preset.updated_at,
    "version": Preset.version,
    "name": Preset.name,
    "description": Preset.description,
    "type": Preset.type,
    "user.id": Preset.user_id,
}


def _visible(preset: Preset | None, user_id: str | None) -> bool:
    return preset is not None and (preset.type == "system" or (user_id is not None and preset.user_id == user_id))


def get(db: Database, *, user_id: str | None, preset_id: str) -> Preset:
    """A system preset, or one of the account's custom presets; NotFound otherwise."""
    with db.read() as session:
        preset = session.get(Preset, preset_id) if is_id(preset_id) else None
    if not _visible(preset, user_id):
        raise NotFound("Preset does not exist")
    assert preset is not None
    return preset


def list_presets(
    db: Database, *, user_id: str | None, preset_type: str | None, sort: Sort, start: int, limit: int | None
) -> Page:
    """System presets plus the account's custom ones (only system ones without an account)."""
    stmt = select(Preset)
    if user_id is None:
        stmt = stmt.where(Preset.type == "system")
    else:
        stmt = stmt.where(or_(Preset.type == "system", Preset.user_id == user_id))
    if preset_type is not None:
        stmt = stmt.where(Preset.type == preset_type)
    with db.read() as session:
        return fetch_page(session, stmt, id_column=Preset.id, sort_columns=SORT_COLUMNS, sort=sort, start=start, limit=limit)


def create(
    db: Database, *, user_id: str, name: str, description: str, target_format: dict[str, Any], settings: dict[str, Any] | None
) -> Preset:
    """Store a custom preset after checking its target format against the codecs."""
    with db.write() as session:
        checked = check_target_format(session, target_format)
        now = now_ms()
        preset = Preset(
            id=new_id(),
            user_id=user_id,
            type="custom",
            name=name,
            description=description,
            target_format=checked,
            settings=settings,
            created_at=now,
            updated_at=now,
        )
        session.add(preset)
    return preset


def _own_custom(session: Session, user_id: str, preset_id: str) -> Preset:
    preset = session.get(Preset, preset_id) if is_id(preset_id) else None
    if not _visible(preset, user_id):
        raise NotFound("Preset does not exist")
    assert preset is not None
    if preset.type == "system":
        raise InvalidInput("system presets cannot be changed or deleted")
    return preset


def replace(
    db: Database,
    *,
    user_id: str,
    preset_id: str,
    name: str,
    description: str,
    target_format: dict[str, Any],
    settings: dict[str, Any] | None,
) -> Preset:
    """Replace a custom preset's definition (PUT takes the same full body as POST)."""
    with db.write() as session:
        preset = _own_custom(session, user_id, preset_id)
        preset.target_format = check_target_format(session, target_format)
        preset.name = name
        preset.description = description
        preset.settings = settings
        preset.version += 1
        preset.updated_at = now_ms()
    return preset


def delete(db: Database, *, user_id: str, preset_id: str) -> None:
    """Delete a custom preset that no queued or running job of the account uses."""
    with db.write() as session:
        preset = _own_custom(session, user_id, preset_id)
        ongoing = session.scalars(
            select(Job).where(Job.user_id == user_id, Job.status.in_(("QUEUED", "PROCESSING")))
        )
        for job in ongoing:
            if any(output.get("preset_id") == preset.id for output in job.outputs or ()):
                raise InvalidInput(f"job {job.id} still uses this preset")
        session.delete(preset)


# ---- validation against codec capabilities -------------------------------------------------------


def check_target_format(session: Session, target: dict[str, Any]) -> dict[str, Any]:
    """The target format with codec choices checked and capability values normalised."""
    container = target["container"]
    checked: dict[str, Any] = {"extension": target.get("extension"), "container": container}
    for slot, codec_type in SLOTS:
        choice = target.get(slot)
        checked[slot] = None if choice is None else _check_choice(session, f"target_format.{slot}", choice, codec_type, container)
    if checked["vcodec"] is None and checked["acodec"] is None:
        raise InvalidInput("target_format needs a vcodec, an acodec or both")
    return checked


def _check_choice(session: Session, where: str, choice: dict[str, Any], codec_type: str, container: str) -> dict[str, Any]:
    codec_id = choice["codec"]["id"]
    codec = session.get(Codec, codec_id) if is_id(codec_id) else None
    if codec is None:
        raise InvalidInput(f"{where}.codec: codec {codec_id} does not exist")
    if codec.type != codec_type:
        raise InvalidInput(f"{where}.codec: {codec.name} is an {codec.type} codec, not {codec_type}")
    profiles = {profile["name"]: profile for profile in codec.profiles}
    profile = profiles.get(choice["profile"])
    if profile is None:
        raise InvalidInput(f"{where}.profile must be one of {', '.join(profiles)} for {codec.name}")
    if container not in profile["containers"]:
        raise InvalidInput(
            f"target_format.container {container!r} is not offered by {codec.name} {profile['name']} "
            f"({', '.join(profile['containers'])})"
        )
    low, high = min(codec.passes), max(codec.passes)
    if not low <= choice["passes"] <= high:
        raise InvalidInput(f"{where}.passes must be between {low} and {high} for {codec.name}")
    capabilities: dict[str, list[Any]] = profile["capabilities"]
    caps = {}
    for key, value in choice["caps"].items():
        if key not in capabilities:
            raise InvalidInput(f"{where}.caps.{key} is not a capability of {codec.name} ({', '.join(capabilities)})")
        caps[key] = check_capability(f"{where}.caps.{key}", value, capabilities[key])
    return {"codec": {"id": codec.id}, "profile": profile["name"], "passes": choice["passes"], "caps": caps}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_capability(where: str, value: Any, allowed: list[Any]) -> Any:
    """`value` normalised to the capability's kind, if `allowed` admits it; InvalidInput otherwise.

    Strings that parse are accepted ("false", "1920"), as the reference's own examples send them.
    """
    if all(isinstance(a, bool) for a in allowed):
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"
        if not isinstance(value, bool) or value not in allowed:
            raise InvalidInput(f"{where} must be one of {', '.join(str(a).lower() for a in allowed)}")
        return value
    if all(_is_number(a) for a in allowed):
        number = _number(value)
        if number is None:
            raise InvalidInput(f"{where} must be a number")
        if len(allowed) == 2:
            if not allowed[0] <= number <= allowed[1]:
                raise InvalidInput(f"{where} must be between {allowed[0]} and {allowed[1]}")
        elif number not in allowed:
            raise InvalidInput(f"{where} must be one of {', '.join(str(a) for a in allowed)}")
        return number
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput(f"{where} must be one of {', '.join(str(a) for a in allowed)}")
    return value


def _number(value: Any) -> int | float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not _is_number(value) or value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value) if float(value).is_integer() else value
