package ledger

import (
	"context"
	"crypto/sha256"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/shred"
)

// answerBinding binds a sealed answer to its record, so it cannot be moved.
func answerBinding(rec Idempotency, id contact.ID) (string, []byte) {
	sum := sha256.Sum256([]byte(rec.Workspace + "\x00" + rec.Principal + "\x00" + rec.Key))
	return "idempotency:" + id.String(), sum[:]
}

// SealAnswer seals the stored answer to an idempotent request about contact
// id (rec.Body) with the contact's data key, so that erasing the contact
// shreds the answer too; nil when there is no body or the key is gone (the
// contact was erased meanwhile).
func (s *Contacts) SealAnswer(ctx context.Context, rec Idempotency, id contact.ID) ([]byte, error) {
	if rec.Body == nil {
		return nil, nil
	}
	k, err := s.vault.ContactKey(ctx, rec.Workspace, id)
	if err != nil || k.Destroyed {
		return nil, err
	}
	stream, bind := answerBinding(rec, id)
	return shred.Seal(k.Key, stream, bind, rec.Body)
}

// OpenAnswer opens an answer sealed by SealAnswer; nil when the key is gone.
func (s *Contacts) OpenAnswer(ctx context.Context, rec Idempotency, id contact.ID) ([]byte, error) {
	k, err := s.vault.ContactKey(ctx, rec.Workspace, id)
	if err != nil || k.Destroyed {
		return nil, err
	}
	stream, bind := answerBinding(rec, id)
	return shred.Open(k.Key, stream, bind, rec.Body)
}
