package apicontract

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Lint checks what a generated client and a validating proxy need of a
// description, beyond its being valid OpenAPI: one operationId per
// operation, unique; a success answer; a schema for every body an
// operation takes or answers (streams: a string, with an item schema);
// and required properties that exist. It returns one sentence per problem,
// sorted; none when the description passes.
func Lint(spec []byte) ([]string, error) {
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load the description: %w", err)
	}
	var out []string
	byID := map[string][]string{}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" {
				out = append(out, where+" has no operationId")
			} else {
				byID[op.OperationID] = append(byID[op.OperationID], where)
			}
			out = append(out, lintOperation(doc, where, op)...)
		}
	}
	for id, ops := range byID {
		if len(ops) > 1 {
			slices.Sort(ops)
			out = append(out, fmt.Sprintf("operationId %q is used by %s: each operation needs its own (generated clients name their functions by it)", id, strings.Join(ops, " and ")))
		}
	}
	if doc.Components != nil {
		for name, s := range doc.Components.Schemas {
			out = append(out, lintRequired("schema "+name, s, map[*openapi3.Schema]bool{})...)
		}
	}
	slices.Sort(out)
	return out, nil
}

func lintOperation(doc *openapi3.T, where string, op *openapi3.Operation) []string {
	var out []string
	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		if len(rb.Value.Content) == 0 {
			out = append(out, where+": the request body lists no media type")
		}
		for mt, m := range rb.Value.Content {
			if m.Schema == nil {
				out = append(out, fmt.Sprintf("%s: the request body's %s has no schema", where, mt))
			}
		}
	}
	success := false
	for code, r := range op.Responses.Map() {
		status, err := strconv.Atoi(code)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: response %q: list each status on its own, so a client knows what it gets", where, code))
			continue
		}
		if status >= 200 && status < 300 {
			success = true
		}
		if r.Value == nil {
			continue
		}
		if status == 204 || status == 304 {
			continue
		}
		if len(r.Value.Content) == 0 {
			out = append(out, fmt.Sprintf("%s: response %d has no content: describe its body with a schema", where, status))
		}
		for mt, m := range r.Value.Content {
			out = append(out, lintMedia(doc, fmt.Sprintf("%s: response %d's %s", where, status, mt), mt, m)...)
		}
	}
	if !success {
		out = append(out, where+" has no 2xx response")
	}
	return out
}

func lintMedia(doc *openapi3.T, where, mt string, m *openapi3.MediaType) []string {
	if m.Schema == nil || m.Schema.Value == nil {
		return []string{where + " has no schema"}
	}
	if !Streamed(mediaType(mt)) {
		return nil
	}
	var out []string
	if !m.Schema.Value.Type.Is("string") {
		out = append(out, where+" is a stream: its schema must be a string (what validators can read), with the items in "+ItemSchemaExtension)
	}
	if _, _, err := resolveItemSchema(doc, m); err != nil {
		out = append(out, fmt.Sprintf("%s %v", where, err))
	}
	return out
}

// lintRequired finds required properties a schema doesn't list.
func lintRequired(where string, ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) []string {
	if ref == nil || ref.Value == nil || seen[ref.Value] {
		return nil
	}
	s := ref.Value
	seen[s] = true
	var out []string
	if len(s.AllOf) == 0 && len(s.OneOf) == 0 && len(s.AnyOf) == 0 {
		for _, r := range s.Required {
			if _, ok := s.Properties[r]; !ok {
				out = append(out, fmt.Sprintf("%s requires %q, which is not among its properties", where, r))
			}
		}
	}
	for name, p := range s.Properties {
		if p.Ref == "" {
			out = append(out, lintRequired(where+"."+name, p, seen)...)
		}
	}
	if s.Items != nil && s.Items.Ref == "" {
		out = append(out, lintRequired(where+"[]", s.Items, seen)...)
	}
	return out
}
