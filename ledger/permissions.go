package ledger

import (
	"slices"

	"github.com/contactledger/ledger/domain/contact"
)

// Permissions is the one permission table: which roles may perform each
// operation, for every adapter (the HTTP API and the console).
// Policy-dependent rules (who may restore, whether purge is allowed) are
// checked again by the domain against the workspace's policy.
var Permissions = map[string][]contact.Role{
	"contacts.create":          {contact.RoleMember, contact.RoleAdmin},
	"contacts.update":          {contact.RoleMember, contact.RoleAdmin},
	"contacts.archive":         {contact.RoleMember, contact.RoleAdmin},
	"contacts.unarchive":       {contact.RoleMember, contact.RoleAdmin},
	"contacts.trash":           {contact.RoleMember, contact.RoleAdmin},
	"contacts.delete":          {contact.RoleMember, contact.RoleAdmin},
	"contacts.restore":         {contact.RoleMember, contact.RoleAdmin},
	"contacts.purge":           {contact.RoleAdmin},
	"contacts.anonymize":       {contact.RoleAdmin},
	"contacts.list":            {contact.RoleMember, contact.RoleAdmin, contact.RoleAuditor},
	"contacts.get":             {contact.RoleMember, contact.RoleAdmin, contact.RoleAuditor},
	"contacts.history":         {contact.RoleMember, contact.RoleAdmin, contact.RoleAuditor},
	"tokens.create":            {contact.RoleAdmin},
	"tokens.list":              {contact.RoleAdmin},
	"tokens.revoke":            {contact.RoleAdmin},
	"contacts.bulk":            {contact.RoleMember, contact.RoleAdmin},
	"contacts.import":          {contact.RoleMember, contact.RoleAdmin},
	"contacts.tags":            {contact.RoleMember, contact.RoleAdmin},
	"contacts.notes.add":       {contact.RoleMember, contact.RoleAdmin},
	"contacts.notes.list":      {contact.RoleMember, contact.RoleAdmin, contact.RoleAuditor},
	"contacts.lists.set":       {contact.RoleMember, contact.RoleAdmin},
	"contacts.lists.remove":    {contact.RoleMember, contact.RoleAdmin},
	"contacts.links.add":       {contact.RoleMember, contact.RoleAdmin},
	"contacts.links.remove":    {contact.RoleMember, contact.RoleAdmin},
	"contacts.spam":            {contact.RoleMember, contact.RoleAdmin},
	"contacts.unspam":          {contact.RoleMember, contact.RoleAdmin},
	"restore_jobs.create":      {contact.RoleAdmin},
	"restore_jobs.get":         {contact.RoleAdmin, contact.RoleAuditor},
	"restore_jobs.cancel":      {contact.RoleAdmin},
	"workspace.policy.get":     {contact.RoleAdmin},
	"workspace.policy.put":     {contact.RoleAdmin},
	"audit.events":             {contact.RoleAdmin, contact.RoleAuditor},
	"contacts.erasure_receipt": {contact.RoleAdmin, contact.RoleAuditor},
	"receipts.public_key":      {contact.RoleAdmin, contact.RoleAuditor},
	// Legal holds are compliance staff's (auditors) as well as admins': a
	// hold only preserves (nothing is changed, shown or erased by it), and
	// those who must stop an erasure need not be able to make one.
	"contacts.hold":          {contact.RoleAdmin, contact.RoleAuditor},
	"contacts.release_hold":  {contact.RoleAdmin, contact.RoleAuditor},
	"holds.list":             {contact.RoleAdmin, contact.RoleAuditor},
	"workspace.hold":         {contact.RoleAdmin, contact.RoleAuditor},
	"workspace.release_hold": {contact.RoleAdmin, contact.RoleAuditor},
	// The change feed; personal values in it only for events.personal.
	"events.list":   {contact.RoleMember, contact.RoleAdmin, contact.RoleAuditor},
	"events.stream": {contact.RoleMember, contact.RoleAdmin, contact.RoleAuditor},
	// events.personal is no route: it says who may receive personal values
	// in the change feed (include_personal=true) and set include_personal
	// on a webhook subscription.
	"events.personal":        {contact.RoleAdmin},
	"webhooks.create":        {contact.RoleAdmin},
	"webhooks.list":          {contact.RoleAdmin},
	"webhooks.get":           {contact.RoleAdmin},
	"webhooks.update":        {contact.RoleAdmin},
	"webhooks.delete":        {contact.RoleAdmin},
	"webhooks.rotate_secret": {contact.RoleAdmin},
	"webhooks.deliveries":    {contact.RoleAdmin},
	"webhooks.replay":        {contact.RoleAdmin},
	"webhooks.test":          {contact.RoleAdmin},
	// webhooks.status is no route: it says who sees how subscriptions
	// deliver on the console's Engineers page (their ids, state, lag and
	// failed attempts; never their URLs, descriptions or secrets, which
	// are webhooks.get's).
	"webhooks.status": {contact.RoleOperator, contact.RoleAdmin},
	// Operators see and rebuild projections; their answers carry no personal data.
	"projections.status":         {contact.RoleOperator, contact.RoleAdmin},
	"projections.rebuild":        {contact.RoleOperator, contact.RoleAdmin},
	"projections.rebuild_status": {contact.RoleOperator, contact.RoleAdmin},
	"projections.rebuild_cancel": {contact.RoleOperator, contact.RoleAdmin},
}

// Allowed reports whether role may perform op; an operation the table
// does not list is allowed to nobody.
func Allowed(role contact.Role, op string) bool { return slices.Contains(Permissions[op], role) }
