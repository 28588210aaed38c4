-- +goose Up
-- The identity index: every live contact (active, archived or in trash) by
-- the blind indexes of its email, phone and (source system, external id),
-- with its spam mark. Kept by the "identities" projection like a view: doc
-- is the contact's snapshot, so later events apply to it.
CREATE TABLE contact_identities (
    workspace   text        NOT NULL,
    id          text        NOT NULL,
    state       text        NOT NULL,
    spam        boolean     NOT NULL,
    email_bidx  text        NOT NULL,
    phone_bidx  text        NOT NULL,
    ext_bidx    text        NOT NULL,
    sort_at     timestamptz NOT NULL,
    version     bigint      NOT NULL,
    pos_commit  numeric(20) NOT NULL,
    pos_prepare numeric(20) NOT NULL,
    doc         jsonb       NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE INDEX contact_identities_ext ON contact_identities (workspace, ext_bidx);
CREATE INDEX contact_identities_email ON contact_identities (workspace, email_bidx);
CREATE INDEX contact_identities_phone ON contact_identities (workspace, phone_bidx);

-- +goose Down
DROP TABLE contact_identities;
