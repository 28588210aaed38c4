package httpapi

import (
	"context"
	"net/http"

	"github.com/contactledger/ledger/adapters/wire"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/projections"
	"github.com/labstack/echo/v4"
)

// Projections is what the API needs of the projection runner.
type Projections interface {
	Status(ctx context.Context) ([]projections.Status, error)
	StartRebuild(ctx context.Context, name, reason, workspace, by string) (projections.RebuildJob, error)
	RebuildJob(ctx context.Context, id string) (projections.RebuildJob, error)
	CancelRebuild(ctx context.Context, id string) (projections.RebuildJob, error)
	RecentRebuilds(ctx context.Context, limit int) ([]projections.RebuildJob, error)
}

// visibleTo returns whether a caller of workspace may see a rebuild's
// record: the projections are the deployment's, but a rebuild asked for
// through the API belongs to its workspace (its record names a token), as
// everything a token sees does; the command line's and the ledger's own
// rebuilds name no token and are visible to every operator.
func visibleTo(workspace string) func(projections.RebuildJob) bool {
	return func(j projections.RebuildJob) bool { return j.Workspace == "" || j.Workspace == workspace }
}

var errNoProjections = &kernel.Error{Code: kernel.CodeUnavailable, Reason: "projections-unavailable", Message: "this server does not run the projections"}

func (s *Server) projectionStatus(c echo.Context) error {
	if s.proj == nil {
		return errNoProjections
	}
	if _, err := strictQuery(c, nil); err != nil {
		return err
	}
	sts, err := s.proj.Status(c.Request().Context())
	if err != nil {
		return err
	}
	recent, err := s.proj.RecentRebuilds(c.Request().Context(), 10)
	if err != nil {
		return err
	}
	visible := visibleTo(principal(c).Workspace)
	rebuilds := make([]wire.RebuildJSON, 0, len(recent))
	for _, j := range recent {
		if visible(j) {
			rebuilds = append(rebuilds, wire.RebuildJobJSON(j))
		}
	}
	return ok(c, http.StatusOK, map[string]any{"projections": wire.ProjectionsJSON(sts, visible), "rebuilds": rebuilds})
}

func (s *Server) startRebuild(c echo.Context) error {
	if s.proj == nil {
		return errNoProjections
	}
	var empty struct{}
	if err := decode(c, &empty, true); err != nil {
		return err
	}
	j, err := s.proj.StartRebuild(c.Request().Context(), c.Param("name"), "requested", principal(c).Workspace, principal(c).TokenID)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/v1/projections/"+c.Param("name")+"/rebuilds/"+j.ID)
	return ok(c, http.StatusAccepted, wire.RebuildJobJSON(j))
}

// rebuildOf returns the rebuild named in the path, which must be of the projection named in it.
func (s *Server) rebuildOf(c echo.Context, cancel bool) (projections.RebuildJob, error) {
	if s.proj == nil {
		return projections.RebuildJob{}, errNoProjections
	}
	notFound := kernel.Errorf(kernel.ErrNotFound, "no such rebuild of this projection")
	j, err := s.proj.RebuildJob(c.Request().Context(), c.Param("id"))
	if err != nil || j.Projection != c.Param("name") || !visibleTo(principal(c).Workspace)(j) {
		if err == nil || kernel.ErrorCode(err) == kernel.CodeNotFound {
			return projections.RebuildJob{}, notFound
		}
		return projections.RebuildJob{}, err
	}
	if cancel {
		return s.proj.CancelRebuild(c.Request().Context(), j.ID)
	}
	return j, nil
}

func (s *Server) rebuildStatus(c echo.Context) error {
	j, err := s.rebuildOf(c, false)
	if err != nil {
		return err
	}
	return ok(c, http.StatusOK, wire.RebuildJobJSON(j))
}

func (s *Server) cancelRebuild(c echo.Context) error {
	j, err := s.rebuildOf(c, true)
	if err != nil {
		return err
	}
	return ok(c, http.StatusAccepted, wire.RebuildJobJSON(j))
}
