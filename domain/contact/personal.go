package contact

import (
	"maps"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/contactledger/ledger/domain/kernel"
)

// Personal holds the personal fields of a contact. They are only ever stored
// sealed under the contact's data key, and read as shredded once it is destroyed.
type Personal struct {
	Name         string            `json:"name,omitempty"`
	Email        string            `json:"email,omitempty"`
	Phone        string            `json:"phone,omitempty"`
	JobTitle     string            `json:"job_title,omitempty"`
	Address      string            `json:"address,omitempty"`
	CustomFields map[string]string `json:"custom_fields,omitempty"`
	// ExternalID is the contact's id in its source system. It identifies the
	// person there, so it is personal too.
	ExternalID string `json:"external_id,omitempty"`
}

// PersonalFields names every personal field, in the order receipts list them.
var PersonalFields = []string{"name", "email", "phone", "job_title", "address", "custom_fields", "external_id", "notes"}

// Clone returns a deep copy.
func (p Personal) Clone() Personal {
	p.CustomFields = maps.Clone(p.CustomFields)
	return p
}

// Limits on input values.
const (
	MaxNameLen        = 200
	MaxEmailLen       = 254
	MaxJobTitleLen    = 200
	MaxAddressLen     = 1000
	MaxCustomFields   = 50
	MaxCustomValueLen = 2000
	MaxExternalIDLen  = 256
	MaxTags           = 50
	MaxTagLen         = 64
	MaxReasonLen      = 500
	MaxNoteLen        = 10000
)

var customKeyPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// Source says which system a contact came from and its id there.
type Source struct {
	System     string `json:"system,omitempty"`
	ExternalID string `json:"external_id,omitempty"`
}

// Draft is the input of Create.
type Draft struct {
	Personal Personal
	Source   string
	Tags     []string
}

// Patch is the input of Update. A nil pointer leaves a field as it is, a
// pointer to "" clears it; CustomFields maps a key to a new value, or to nil
// to remove the key.
type Patch struct {
	Name, Email, Phone, JobTitle, Address *string
	CustomFields                          map[string]*string
}

// IsEmpty reports whether the patch changes nothing.
func (p Patch) IsEmpty() bool {
	return p.Name == nil && p.Email == nil && p.Phone == nil && p.JobTitle == nil && p.Address == nil && len(p.CustomFields) == 0
}

type validator struct{ errs []kernel.FieldError }

func (v *validator) fail(field, msg string) {
	v.errs = append(v.errs, kernel.FieldError{Field: field, Message: msg})
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return kernel.Invalid(v.errs...)
}

// text checks a free-text value: valid UTF-8, bounded length, and no control
// characters (newlines and tabs are allowed where multiline is true).
func (v *validator) text(field, s string, max int, multiline bool) {
	if !utf8.ValidString(s) {
		v.fail(field, "must be valid UTF-8")
		return
	}
	if n := utf8.RuneCountInString(s); n > max {
		v.fail(field, "is too long (maximum "+strconv.Itoa(max)+" characters)")
		return
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			v.fail(field, "must not contain control characters")
			return
		}
	}
}

func (v *validator) email(s string) {
	if s == "" {
		return
	}
	if len(s) > MaxEmailLen {
		v.fail("email", "is too long")
		return
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		v.fail("email", "is not a valid email address (name@example.com)")
	}
}

func (v *validator) phone(s string) {
	if s == "" {
		return
	}
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '+' && i == 0:
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			v.fail("phone", "may only contain digits, a leading '+', spaces, '-', '.', '(' and ')'")
			return
		}
	}
	if digits < 5 || digits > 15 {
		v.fail("phone", "must have between 5 and 15 digits")
	}
}

func (v *validator) customKey(field, k string) {
	if !customKeyPattern.MatchString(k) {
		v.fail(field, "keys are 1-64 characters of letters, digits and '_', starting with a letter")
	}
}

func (v *validator) personal(p Personal) {
	v.text("name", p.Name, MaxNameLen, false)
	v.email(p.Email)
	v.phone(p.Phone)
	v.text("job_title", p.JobTitle, MaxJobTitleLen, false)
	v.text("address", p.Address, MaxAddressLen, true)
	v.text("source.external_id", p.ExternalID, MaxExternalIDLen, false)
	if len(p.CustomFields) > MaxCustomFields {
		v.fail("custom_fields", "at most "+strconv.Itoa(MaxCustomFields)+" fields")
	}
	for _, k := range slices.Sorted(maps.Keys(p.CustomFields)) {
		if !customKeyPattern.MatchString(k) {
			v.customKey("custom_fields", k) // never named: the key is not one
			continue
		}
		v.text("custom_fields."+k, p.CustomFields[k], MaxCustomValueLen, true)
	}
}

func (v *validator) tags(field string, tags []string) []string {
	if len(tags) > MaxTags {
		v.fail(field, "at most "+strconv.Itoa(MaxTags)+" tags")
		return nil
	}
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		t = strings.TrimSpace(t)
		if t == "" {
			v.fail(field, "tags must not be empty")
			return nil
		}
		v.text(field, t, MaxTagLen, false)
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ValidateReason checks the free-text reason of a transition. A reason
// recorded on a contact is sealed under its key (people write names into
// reasons), so any text is accepted.
func ValidateReason(reason string) error {
	var v validator
	v.text("reason", reason, MaxReasonLen, false)
	return v.err()
}

// ValidateClearText checks a free-text value that is kept in clear, beyond
// any contact's erasure (an erasure's request reference, a restore job's
// reason): it refuses what looks like an email address or a phone number,
// the personal data people most often paste into such a box.
func ValidateClearText(field, s string) error {
	var v validator
	v.clearText(field, s)
	return v.err()
}

func (v *validator) clearText(field, s string) {
	n := len(v.errs)
	v.text(field, s, MaxReasonLen, false)
	if len(v.errs) > n {
		return
	}
	switch {
	case LooksLikeEmail(s):
		v.fail(field, "is kept in clear and must not hold an email address")
	case LooksLikePhone(s):
		v.fail(field, "is kept in clear and must not hold a phone number")
	}
}

// isoTime matches dates and times, which are not phone numbers.
var isoTime = regexp.MustCompile(`\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?`)

var emailLike = regexp.MustCompile(`[^\s@]@[^\s@]+\.[^\s@]`)

// LooksLikeEmail reports whether s holds something shaped like an email
// address: text, an '@', and a domain with a dot.
func LooksLikeEmail(s string) bool { return emailLike.MatchString(s) }

// LooksLikePhone reports whether s holds something shaped like a phone
// number: a '+' followed by 7 or more digits, or 9 or more digits in a row,
// with spaces, dots, dashes, slashes and brackets allowed between them. A
// reference such as "DSR-2026-0042" (8 digits) passes.
func LooksLikePhone(s string) bool {
	s = isoTime.ReplaceAllString(s, " ")
	digits, plus := 0, false
	flush := func() bool { return (plus && digits >= 7) || digits >= 9 }
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '+' && digits == 0:
			plus = true
		case r == ' ' || r == '.' || r == '-' || r == '/' || r == '(' || r == ')':
			// separators inside a number
		default:
			if flush() {
				return true
			}
			digits, plus = 0, false
		}
	}
	return flush()
}

// NormalizeEmail returns the form of an email address used for matching.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormalizePhone returns the form of a phone number used for matching: its
// digits, with the leading '+' when it has one.
func NormalizePhone(s string) string {
	var b strings.Builder
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "+") {
		b.WriteByte('+')
	}
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (p Personal) hasIdentity() bool { return p.Name != "" || p.Email != "" || p.Phone != "" }

func (p *Personal) apply(fields []string, values Personal) {
	for _, f := range fields {
		switch f {
		case "name":
			p.Name = values.Name
		case "email":
			p.Email = values.Email
		case "phone":
			p.Phone = values.Phone
		case "job_title":
			p.JobTitle = values.JobTitle
		case "address":
			p.Address = values.Address
		default:
			if k, ok := strings.CutPrefix(f, "custom_fields."); ok {
				if val, ok := values.CustomFields[k]; ok {
					if p.CustomFields == nil {
						p.CustomFields = map[string]string{}
					}
					p.CustomFields[k] = val
				} else {
					delete(p.CustomFields, k)
				}
			}
		}
	}
	if len(p.CustomFields) == 0 {
		p.CustomFields = nil
	}
}
