// Package wire holds the JSON shapes that the HTTP API and the command line
// both write and read: a contact's history events, tokens, webhooks and their
// status, projections and rebuilds, the receipt-signing public key, and the
// audit log's query parameters. The API's description (openapi.json) is the
// contract for them; the CLI prints the same documents the API serves.
package wire
