-- +goose Up
-- The identity index: every live contact (active, archived or in trash) by
-- the blind indexes of its email, phone and (source system, external id),
-- with its spam mark. Kept by the "identities" projection like a view: doc
-- is the contact's snapshot, so later events apply to it.
CREATE TABLE contact_identities (
    workspace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    spam        INTEGER NOT NULL,
    email_bidx  TEXT    NOT NULL,
    phone_bidx  TEXT    NOT NULL,
    ext_bidx    TEXT    NOT NULL,
    sort_at     INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    pos_commit  INTEGER NOT NULL,
    pos_prepare INTEGER NOT NULL,
    doc         TEXT    NOT NULL,
    PRIMARY KEY (workspace, id)
) WITHOUT ROWID;
CREATE INDEX contact_identities_ext ON contact_identities (workspace, ext_bidx);
CREATE INDEX contact_identities_email ON contact_identities (workspace, email_bidx);
CREATE INDEX contact_identities_phone ON contact_identities (workspace, phone_bidx);

-- +goose Down
DROP TABLE contact_identities;
