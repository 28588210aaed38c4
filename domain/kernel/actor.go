package kernel

// Role is what a caller may do in a workspace.
type Role string

// The roles. RoleSystem is the ledger itself (the retention sweeper, jobs); no
// token can carry it.
const (
	RoleMember   Role = "member"
	RoleAdmin    Role = "admin"
	RoleAuditor  Role = "auditor"
	RoleOperator Role = "operator"
	RoleSystem   Role = "system"
)

// ParseRole parses one of the roles a token can carry.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleMember, RoleAdmin, RoleAuditor, RoleOperator:
		return r, nil
	}
	return "", Invalid(FieldError{Field: "role", Message: "must be member, admin, auditor or operator"})
}

// Actor is who caused an event: a principal (a token id, or system:<name>) and its role.
type Actor struct {
	Principal string `json:"principal"`
	Role      Role   `json:"role"`
}

// System returns the actor for work the ledger does on its own, such as retention.
func System(name string) Actor { return Actor{Principal: "system:" + name, Role: RoleSystem} }
