"""Deleting a file's bytes for good, and the guard that keeps a deleted project empty: the steps
customer deletion (reframe.services.deletion), the sweeper (reframe.services.sweep) and output
registration (reframe.services.uploads) share, in a module that imports none of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from reframe.config import Settings
from reframe.db.base import utcnow
from reframe.db.models import Account, File, FileRole, Project
from reframe.errors import NotFound
from reframe.storage.base import Storage

# A file row whose bytes are gone for good names no object any more: its keys become this
# prefix plus its id (unique, like the keys), so no later delete or lookup can reach an object.
DELETED_KEY_PREFIX = "deleted/"


def project_deleted(project_id: str) -> NotFound:
    return NotFound(
        f"project {project_id} was deleted by its owner; its files, download URLs and share "
        "links are gone"
    )


def ensure_live_project(session: Session, account_id: str, project_id: str) -> None:
    """Refuse a project that was deleted: what the caller is about to attach in this
    transaction would outlive the deletion.

    A share lock on the account row (PostgreSQL; SQLite's write lock does the same) waits for a
    deletion that is marking the project (it holds that row's update lock) and keeps the next
    one from marking it until this transaction ends. The account row, not the project's: the
    insert that follows takes key-share locks on both rows, and a lock on the project taken
    before the account's would deadlock against a spender holding the account's lock.
    """
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update(read=True))
    deleted_at = session.scalar(select(Project.deleted_at).where(Project.id == project_id))
    if deleted_at is not None:
        raise project_deleted(project_id)


def delete_file_bytes(storage: Storage, storage_key: str, pinned_key: str | None) -> None:
    """Delete every stored object of one file row; deleting a missing one is not an error.

    A verified input's bytes are its pinned copy (reframe.services.uploads); the upload key
    goes too, where an S3 client may have PUT again after pricing. The one byte-deleting step
    of the sweeper and of customer deletion (reframe.services.deletion).
    """
    for stored in (pinned_key, storage_key):
        if stored:
            storage.delete(stored)


def purge_file(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    file_id: str,
    *,
    now: datetime | None = None,
) -> bool:
    """Delete the stored bytes of one file of a deleted project; True once they are gone for
    good and the row names no object any more.

    False when the bytes were deleted but its upload URL could still put some back (an input
    presigned less than REFRAME_UPLOAD_URL_TTL_SEC ago): the key is kept for the sweeper.
    Raises what the storage raised; the row is left as it was, for the sweeper to retry.
    """
    with sessions() as session:
        row = session.execute(
            select(File.storage_key, File.pinned_key, File.role, File.created_at).where(
                File.id == file_id
            )
        ).one_or_none()
    if row is None or row.storage_key.startswith(DELETED_KEY_PREFIX):
        return True
    delete_file_bytes(storage, row.storage_key, row.pinned_key)
    writable_until = row.created_at + timedelta(seconds=settings.upload_url_ttl_sec)
    if row.role is FileRole.INPUT and writable_until > (now or utcnow()):
        return False
    with sessions() as session:
        session.execute(
            update(File)
            .where(File.id == file_id, File.storage_key == row.storage_key)
            .values(storage_key=f"{DELETED_KEY_PREFIX}{file_id}", pinned_key=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return True
