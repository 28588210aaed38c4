// Package wire holds the JSON shapes that the HTTP API and the command line
// both write and read: a contact's history events, tokens, webhooks and their
// status, projections and rebuilds, the receipt-signing public key, and the
// audit log's query parameters. The API's description (openapi.json) is the
// contract for them; the CLI prints the same documents the API serves. It
// also holds the one table from application error codes to HTTP statuses,
// which the API's problems and the console's pages share.
package wire
