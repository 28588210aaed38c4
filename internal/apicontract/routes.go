package apicontract

import (
	"fmt"
	"slices"
	"strings"
)

// Route is one method and path a router serves, in the description's
// form (/v1/contacts/{id}).
type Route struct{ Method, Path string }

// TemplatePath turns a router's path (/v1/contacts/:id) into the
// description's form (/v1/contacts/{id}).
func TemplatePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			parts[i] = "{" + name + "}"
		}
	}
	return strings.Join(parts, "/")
}

// CompareRoutes returns what the router serves that the description
// lacks, and what the description has that the router does not serve,
// one sentence each, sorted.
func (c *Checker) CompareRoutes(served []Route) []string {
	described := map[Route]string{}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			described[Route{strings.ToUpper(method), path}] = op.OperationID
		}
	}
	routed := map[Route]bool{}
	var out []string
	for _, r := range served {
		r.Method = strings.ToUpper(r.Method)
		routed[r] = true
		if _, ok := described[r]; !ok {
			out = append(out, fmt.Sprintf("%s %s is routed but not described: add paths[%q].%s to the description, with its operationId, parameters, request body and every response (schema, headers)",
				r.Method, r.Path, r.Path, strings.ToLower(r.Method)))
		}
	}
	for r, op := range described {
		if !routed[r] {
			out = append(out, fmt.Sprintf("%s %s (%s) is described but not routed: route it, or remove it from the description", r.Method, r.Path, op))
		}
	}
	slices.Sort(out)
	return out
}

// OperationID returns the operationId the description gives a route, or "".
func (c *Checker) OperationID(r Route) string {
	item := c.doc.Paths.Value(r.Path)
	if item == nil {
		return ""
	}
	if op := item.GetOperation(strings.ToUpper(r.Method)); op != nil {
		return op.OperationID
	}
	return ""
}
