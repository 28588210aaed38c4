package ledger

import (
	"slices"

	"github.com/contactledger/ledger/domain/kernel"
)

// Permissions is the one permission table: which roles may perform each
// operation, for every adapter (the HTTP API and the console).
// Policy-dependent rules (who may restore, whether purge is allowed) are
// checked again by the domain against the workspace's policy.
var Permissions = map[string][]kernel.Role{
	"contacts.create":          {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.update":          {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.archive":         {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.unarchive":       {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.trash":           {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.delete":          {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.restore":         {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.purge":           {kernel.RoleAdmin},
	"contacts.anonymize":       {kernel.RoleAdmin},
	"contacts.list":            {kernel.RoleMember, kernel.RoleAdmin, kernel.RoleAuditor},
	"contacts.get":             {kernel.RoleMember, kernel.RoleAdmin, kernel.RoleAuditor},
	"contacts.history":         {kernel.RoleMember, kernel.RoleAdmin, kernel.RoleAuditor},
	"tokens.create":            {kernel.RoleAdmin},
	"tokens.list":              {kernel.RoleAdmin},
	"tokens.revoke":            {kernel.RoleAdmin},
	"contacts.bulk":            {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.import":          {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.tags":            {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.notes.add":       {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.notes.list":      {kernel.RoleMember, kernel.RoleAdmin, kernel.RoleAuditor},
	"contacts.lists.set":       {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.lists.remove":    {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.links.add":       {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.links.remove":    {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.spam":            {kernel.RoleMember, kernel.RoleAdmin},
	"contacts.unspam":          {kernel.RoleMember, kernel.RoleAdmin},
	"restore_jobs.create":      {kernel.RoleAdmin},
	"restore_jobs.get":         {kernel.RoleAdmin, kernel.RoleAuditor},
	"restore_jobs.cancel":      {kernel.RoleAdmin},
	"workspace.policy.get":     {kernel.RoleAdmin},
	"workspace.policy.put":     {kernel.RoleAdmin},
	"audit.events":             {kernel.RoleAdmin, kernel.RoleAuditor},
	"contacts.erasure_receipt": {kernel.RoleAdmin, kernel.RoleAuditor},
	"receipts.public_key":      {kernel.RoleAdmin, kernel.RoleAuditor},
	// Legal holds are compliance staff's (auditors) as well as admins': a
	// hold only preserves (nothing is changed, shown or erased by it), and
	// those who must stop an erasure need not be able to make one.
	"contacts.hold":          {kernel.RoleAdmin, kernel.RoleAuditor},
	"contacts.release_hold":  {kernel.RoleAdmin, kernel.RoleAuditor},
	"holds.list":             {kernel.RoleAdmin, kernel.RoleAuditor},
	"workspace.hold":         {kernel.RoleAdmin, kernel.RoleAuditor},
	"workspace.release_hold": {kernel.RoleAdmin, kernel.RoleAuditor},
	// The change feed; personal values in it only for events.personal.
	"events.list":   {kernel.RoleMember, kernel.RoleAdmin, kernel.RoleAuditor},
	"events.stream": {kernel.RoleMember, kernel.RoleAdmin, kernel.RoleAuditor},
	// events.personal is no route: it says who may receive personal values
	// in the change feed (include_personal=true) and set include_personal
	// on a webhook subscription.
	"events.personal":        {kernel.RoleAdmin},
	"webhooks.create":        {kernel.RoleAdmin},
	"webhooks.list":          {kernel.RoleAdmin},
	"webhooks.get":           {kernel.RoleAdmin},
	"webhooks.update":        {kernel.RoleAdmin},
	"webhooks.delete":        {kernel.RoleAdmin},
	"webhooks.rotate_secret": {kernel.RoleAdmin},
	"webhooks.deliveries":    {kernel.RoleAdmin},
	"webhooks.replay":        {kernel.RoleAdmin},
	"webhooks.test":          {kernel.RoleAdmin},
	// webhooks.status is no route: it says who sees how subscriptions
	// deliver on the console's Engineers page (their ids, state, lag and
	// failed attempts; never their URLs, descriptions or secrets, which
	// are webhooks.get's).
	"webhooks.status": {kernel.RoleOperator, kernel.RoleAdmin},
	// Operators see and rebuild projections; their answers carry no personal data.
	"projections.status":         {kernel.RoleOperator, kernel.RoleAdmin},
	"projections.rebuild":        {kernel.RoleOperator, kernel.RoleAdmin},
	"projections.rebuild_status": {kernel.RoleOperator, kernel.RoleAdmin},
	"projections.rebuild_cancel": {kernel.RoleOperator, kernel.RoleAdmin},
}

// Allowed reports whether role may perform op; an operation the table
// does not list is allowed to nobody.
func Allowed(role kernel.Role, op string) bool { return slices.Contains(Permissions[op], role) }
