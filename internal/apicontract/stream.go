package apicontract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// Streamed media types: the body is a sequence of items, described to
// validators as a string (what OpenAPI 3.0 tools accept) and item by item
// by the schema the media type's x-itemSchema extension refers to (the
// itemSchema field of OpenAPI 3.2, for 3.0 documents).
const (
	NDJSON = "application/x-ndjson"
	JSONL  = "application/jsonl"
	SSE    = "text/event-stream"
)

// ItemSchemaExtension names the item schema of a streamed media type.
const ItemSchemaExtension = "x-itemSchema"

// Streamed reports whether a media type is a sequence of items.
func Streamed(mt string) bool { return mt == NDJSON || mt == JSONL || mt == SSE }

func init() {
	// A validator reads a stream's body as the string its schema says.
	for _, mt := range []string{NDJSON, JSONL, SSE} {
		openapi3filter.RegisterBodyDecoder(mt, openapi3filter.PlainBodyDecoder)
	}
}

// itemSchema resolves a media type's x-itemSchema, which must be a $ref to
// a schema of the components.
func (c *Checker) itemSchema(mt *openapi3.MediaType) (*openapi3.Schema, string, error) {
	return resolveItemSchema(c.doc, mt)
}

func resolveItemSchema(doc *openapi3.T, mt *openapi3.MediaType) (*openapi3.Schema, string, error) {
	raw, ok := mt.Extensions[ItemSchemaExtension]
	if !ok {
		return nil, "", fmt.Errorf("has no %s naming the schema of each item", ItemSchemaExtension)
	}
	m, _ := raw.(map[string]any)
	ref, _ := m["$ref"].(string)
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	if !ok || len(m) != 1 {
		return nil, "", fmt.Errorf("%s must be {\"$ref\": \"#/components/schemas/NAME\"}", ItemSchemaExtension)
	}
	if doc.Components == nil || doc.Components.Schemas[name] == nil || doc.Components.Schemas[name].Value == nil {
		return nil, "", fmt.Errorf("%s refers to %s, which is not a schema of the components", ItemSchemaExtension, ref)
	}
	return doc.Components.Schemas[name].Value, name, nil
}

// checkStream validates each item of a streamed answer against its
// media type's item schema.
func (c *Checker) checkStream(what string, r *openapi3.Response, ex Exchange) []string {
	mt := mediaType(ex.Header.Get("Content-Type"))
	if !Streamed(mt) {
		return nil
	}
	desc := r.Content.Get(mt)
	if desc == nil {
		return nil // ValidateResponse has said so
	}
	schema, name, err := c.itemSchema(desc)
	if err != nil {
		return []string{fmt.Sprintf("%s with %s, whose description %v", what, mt, err)}
	}
	var items []streamItem
	if mt == SSE {
		items = sseItems(ex.Body)
	} else {
		items = lineItems(ex.Body, ex.Truncated)
	}
	var out []string
	for _, it := range items {
		if it.err != nil {
			out = append(out, fmt.Sprintf("%s: %s %d: %v", what, it.kind, it.n, it.err))
			continue
		}
		if err := schema.VisitJSON(it.value, openapi3.MultiErrors(), openapi3.DisableSchemaErrorDetails(), openapi3.VisitAsResponse()); err != nil {
			out = append(out, fmt.Sprintf("%s: %s %d doesn't match schema %s: %s", what, it.kind, it.n, name, flatten(err)))
		}
	}
	return out
}

// streamItem is one item of a stream, decoded.
type streamItem struct {
	kind  string // "line" or "event"
	n     int    // from 1
	value any
	err   error
}

// lineItems splits NDJSON into its lines; a truncated stream's last,
// partial line is left out, and so are empty lines.
func lineItems(body []byte, truncated bool) []streamItem {
	lines := bytes.Split(body, []byte("\n"))
	if truncated || (len(lines) > 0 && len(lines[len(lines)-1]) == 0) {
		lines = lines[:len(lines)-1]
	}
	var out []streamItem
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		it := streamItem{kind: "line", n: i + 1}
		if err := json.Unmarshal(l, &it.value); err != nil {
			it.err = fmt.Errorf("not JSON: %w", err)
		}
		out = append(out, it)
	}
	return out
}

// sseItems parses server-sent events (the WHATWG EventSource format):
// events are separated by a blank line, their data lines joined with "\n";
// comments, and events without data (a bare id or retry), are not items.
// Each event's data is decoded as JSON when it is JSON, else kept as a
// string. The last event counts only once a blank line ends it, so a
// stream cut off mid-event is not misread.
func sseItems(body []byte) []streamItem {
	text := strings.ReplaceAll(strings.ReplaceAll(string(body), "\r\n", "\n"), "\r", "\n")
	blocks := strings.Split(text, "\n\n")
	blocks = blocks[:len(blocks)-1]
	var out []streamItem
	n := 0
	for _, b := range blocks {
		var data []string
		hasData := false
		for _, line := range strings.Split(b, "\n") {
			if line == "" || strings.HasPrefix(line, ":") {
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			if field == "data" {
				data = append(data, value)
				hasData = true
			}
		}
		if !hasData {
			continue
		}
		n++
		it := streamItem{kind: "event", n: n}
		joined := strings.Join(data, "\n")
		if err := json.Unmarshal([]byte(joined), &it.value); err != nil {
			it.value = joined
		}
		out = append(out, it)
	}
	return out
}
