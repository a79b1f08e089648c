"""The Project aggregate: given a project, when a command, then events or an error."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.errors import Invalid, NotFound
from domain.projects import Project

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OWNER = "alice"


def given_project(**fields: object) -> Project:
    """A new project of OWNER's on main, its creation already collected."""
    values = {"name": "shop", "repository_path": "/srv/shop", "default_branch": "main"}
    values.update(fields)
    project = Project.create(project_id=uuid4(), owner=OWNER, now=NOW, **values)  # type: ignore[arg-type]
    project.collect_events()
    return project


def appended(project: Project) -> list[str]:
    """The wire types of the events the command under test appended."""
    return [event.wire_type() for event in project.collect_events()]


def test_creating_a_project_records_its_name_repository_and_branch() -> None:
    project = Project.create(
        project_id=uuid4(),
        owner=OWNER,
        name="shop",
        repository_path=None,
        default_branch="trunk",
        now=NOW,
    )
    assert appended(project) == ["project.created"]
    assert (project.owner, project.name, project.default_branch) == (OWNER, "shop", "trunk")
    assert project.repository_path is None and project.settings == {} and not project.deleted


@pytest.mark.parametrize("field", ["name", "default_branch"])
def test_creating_a_project_with_a_blank_name_or_branch_is_invalid(field: str) -> None:
    values = {"name": "shop", "default_branch": "main", field: "  "}
    with pytest.raises(Invalid) as refused:
        Project.create(project_id=uuid4(), owner=OWNER, repository_path=None, now=NOW, **values)
    assert refused.value.field == field


def test_a_project_is_visible_only_to_its_owner() -> None:
    project = given_project()
    project.check_visible_to(OWNER)
    with pytest.raises(NotFound):
        project.check_visible_to("bob")


def test_updating_records_only_the_fields_that_change() -> None:
    project = given_project()
    project.update(changes={"name": "shop", "default_branch": "develop"}, actor=OWNER, now=NOW)
    events = project.collect_events()
    assert [e.wire_type() for e in events] == ["project.updated"]
    assert events[0].changes == {"default_branch": "develop"}  # type: ignore[attr-defined]
    assert project.default_branch == "develop"


def test_an_update_that_changes_nothing_appends_nothing() -> None:
    project = given_project()
    project.update(changes={"name": "shop"}, actor=OWNER, now=NOW)
    assert appended(project) == []


def test_settings_can_be_replaced() -> None:
    project = given_project()
    project.update(changes={"settings": {"auto_pickup": True}}, actor=OWNER, now=NOW)
    assert appended(project) == ["project.updated"]
    assert project.settings == {"auto_pickup": True}


def test_updating_an_unknown_field_is_invalid_and_appends_nothing() -> None:
    project = given_project()
    with pytest.raises(Invalid) as refused:
        project.update(changes={"owner": "mallory"}, actor=OWNER, now=NOW)
    assert refused.value.field == "owner"
    assert appended(project) == [] and project.owner == OWNER


def test_blanking_the_name_is_invalid() -> None:
    project = given_project()
    with pytest.raises(Invalid):
        project.update(changes={"name": ""}, actor=OWNER, now=NOW)
    assert project.name == "shop"


def test_deleting_hides_the_project_from_its_owner() -> None:
    project = given_project()
    project.delete(actor=OWNER, now=NOW)
    assert appended(project) == ["project.deleted"]
    with pytest.raises(NotFound):
        project.check_visible_to(OWNER)


def test_deleting_twice_appends_one_deletion() -> None:
    project = given_project()
    project.delete(actor=OWNER, now=NOW)
    project.collect_events()
    project.delete(actor=OWNER, now=NOW)
    assert appended(project) == []


def test_a_project_replayed_from_its_events_equals_the_live_one() -> None:
    project = Project.create(
        project_id=uuid4(),
        owner=OWNER,
        name="shop",
        repository_path=None,
        default_branch="main",
        now=NOW,
    )
    project.update(changes={"name": "store"}, actor=OWNER, now=NOW)
    project.delete(actor=OWNER, now=NOW)
    events = project.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert vars(replayed) == vars(project)
