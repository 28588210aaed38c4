package contact

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/contactledger/ledger/domain/kernel"
)

// PolicySettings are the editable settings of a workspace's policy. Turn them
// into a Policy with Policy(), which validates them.
type PolicySettings struct {
	RetentionDays             int         `json:"retention_days"`
	RequireArchiveBeforeTrash bool        `json:"require_archive_before_trash"`
	RestoreRole               kernel.Role `json:"restore_role"`
	PurgeAllowed              bool        `json:"purge_allowed"`
	ProtectedSources          []string    `json:"protected_sources"`
	// IdentityUniqueness says whether an email or phone may belong to two
	// contacts of the workspace (see Uniqueness); empty means the default.
	IdentityUniqueness Uniqueness `json:"identity_uniqueness"`
}

// Uniqueness is how long a contact keeps its email and phone to itself.
type Uniqueness string

// The settings of identity uniqueness.
const (
	// UniquenessOff lets any number of contacts share an email or phone.
	UniquenessOff Uniqueness = "off"
	// UniquenessLive keeps an email or phone to one active or archived
	// contact: moving a contact to trash frees them.
	UniquenessLive Uniqueness = "live"
	// UniquenessUntilPurged keeps them to one contact until it is purged or
	// anonymized, in trash too: "restore before recreating". The default.
	UniquenessUntilPurged Uniqueness = "until_purged"
)

// Policy is a workspace's validated deletion policy.
type Policy struct{ s PolicySettings }

// MaxRetentionDays bounds how long a contact may stay in trash.
const MaxRetentionDays = 3650

var sourcePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

// DefaultPolicy is the policy of a new workspace: 30 days in trash, trash
// straight from active, members may restore, purge allowed, and contacts
// synced from the CRM are protected from deletion.
func DefaultPolicy() Policy {
	return Policy{PolicySettings{RetentionDays: 30, RestoreRole: kernel.RoleMember, PurgeAllowed: true, ProtectedSources: []string{"crm"},
		IdentityUniqueness: UniquenessUntilPurged}}
}

// Policy validates the settings. RetentionDays of 0 turns automatic purge off.
func (s PolicySettings) Policy() (Policy, error) {
	var errs []kernel.FieldError
	if s.RetentionDays < 0 || s.RetentionDays > MaxRetentionDays {
		errs = append(errs, kernel.FieldError{Field: "retention_days", Message: fmt.Sprintf("must be between 0 (never purge automatically) and %d", MaxRetentionDays)})
	}
	if s.RestoreRole != kernel.RoleMember && s.RestoreRole != kernel.RoleAdmin {
		errs = append(errs, kernel.FieldError{Field: "restore_role", Message: "must be member or admin"})
	}
	switch s.IdentityUniqueness {
	case "":
		// Policies saved before the setting existed, and PUTs without it.
		s.IdentityUniqueness = UniquenessUntilPurged
	case UniquenessOff, UniquenessLive, UniquenessUntilPurged:
	default:
		errs = append(errs, kernel.FieldError{Field: "identity_uniqueness", Message: "must be off, live or until_purged"})
	}
	if len(s.ProtectedSources) > 50 {
		errs = append(errs, kernel.FieldError{Field: "protected_sources", Message: "at most 50 sources"})
	}
	srcs := make([]string, 0, len(s.ProtectedSources))
	for _, src := range s.ProtectedSources {
		if !sourcePattern.MatchString(src) {
			errs = append(errs, kernel.FieldError{Field: "protected_sources", Message: "each source is 1-32 characters of a-z, 0-9, '_', '.', '-'"})
			break
		}
		srcs = append(srcs, src)
	}
	if len(errs) > 0 {
		return Policy{}, kernel.Invalid(errs...)
	}
	slices.Sort(srcs)
	s.ProtectedSources = slices.Compact(srcs)
	return Policy{s}, nil
}

// Settings returns a copy of the policy's settings.
func (p Policy) Settings() PolicySettings {
	s := p.s
	s.ProtectedSources = slices.Clone(p.s.ProtectedSources)
	if s.ProtectedSources == nil {
		s.ProtectedSources = []string{}
	}
	return s
}

// RetentionDays is how many days a contact stays in trash before it is purged automatically; 0 means never.
func (p Policy) RetentionDays() int { return p.s.RetentionDays }

// Protects reports whether contacts from source system src cannot be trashed.
func (p Policy) Protects(src string) bool {
	return src != "" && slices.Contains(p.s.ProtectedSources, src)
}

// Uniqueness returns the policy's identity uniqueness.
func (p Policy) Uniqueness() Uniqueness {
	if p.s.IdentityUniqueness == "" {
		return UniquenessUntilPurged
	}
	return p.s.IdentityUniqueness
}

// HoldsIdentity reports whether a contact in state s keeps its email and
// phone to itself under the policy.
func (p Policy) HoldsIdentity(s State) bool {
	switch p.Uniqueness() {
	case UniquenessLive:
		return s == StateActive || s == StateArchived
	case UniquenessUntilPurged:
		return s == StateActive || s == StateArchived || s == StateTrashed
	}
	return false
}

// MayRestore reports whether role may restore contacts from trash.
func (p Policy) MayRestore(r kernel.Role) bool {
	switch r {
	case kernel.RoleAdmin, kernel.RoleSystem:
		return true
	case kernel.RoleMember:
		return p.s.RestoreRole == kernel.RoleMember
	}
	return false
}

// ValidateSource checks the name of a source system.
func ValidateSource(src string) error {
	if !sourcePattern.MatchString(src) {
		return kernel.Invalid(kernel.FieldError{Field: "source", Message: "is 1-32 characters of a-z, 0-9, '_', '.', '-'"})
	}
	return nil
}
