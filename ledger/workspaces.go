package ledger

import "context"

// Workspace returns the named workspace, read from the directory (not the
// service's cache). Errors: kernel.ErrWorkspaceNotFound.
func (s *Access) Workspace(ctx context.Context, name string) (Workspace, error) {
	return s.dir.Workspace(ctx, name)
}

// Workspaces lists every workspace.
func (s *Access) Workspaces(ctx context.Context) ([]Workspace, error) {
	return s.dir.Workspaces(ctx)
}
