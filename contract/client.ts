// A first-time user's program: a client generated from the ledger's served
// description (openapi-typescript, then openapi-fetch) that creates, lists,
// trashes, restores and imports contacts and reads the audit export. It must
// compile under tsc --strict; TestGeneratedClient (cmd/ledger) then runs it
// against a real ledger at LEDGER_URL with the admin token LEDGER_TOKEN, and
// every exchange is checked against the description there too.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/api.js";

type Contact = components["schemas"]["Contact"];
type AuditEvent = components["schemas"]["AuditEvent"];
type Problem = components["schemas"]["Problem"];

const baseUrl = process.env.LEDGER_URL;
const token = process.env.LEDGER_TOKEN;
if (!baseUrl || !token) {
  throw new Error("set LEDGER_URL and LEDGER_TOKEN");
}
const ledger = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

function must<T>(what: string, r: { data?: T; error?: Problem | unknown; response: Response }): T {
  if (r.data === undefined) {
    throw new Error(`${what}: ${r.response.status} ${JSON.stringify(r.error)}`);
  }
  return r.data;
}

function check(what: string, ok: boolean): void {
  if (!ok) {
    throw new Error(`${what}: not as expected`);
  }
}

// ids lists a view's first page; the position makes it read the client's own writes.
async function ids(view: "active" | "archived" | "trash" | "anonymized", minPosition?: string): Promise<string[]> {
  const page = must("list " + view, await ledger.GET("/v1/contacts", { params: { query: { view, min_position: minPosition } } }));
  const next: string | null = page.next_cursor;
  check("a first page of a few contacts is the last", next === null);
  return page.items.map((c: Contact) => c.id);
}

async function main(): Promise<void> {
  const created = await ledger.POST("/v1/contacts", {
    body: { name: "Ada Typed", email: "ada.typed@example.com", tags: ["typescript"], source: { system: "web" } },
    params: { header: { "Idempotency-Key": "ts-create-ada" } },
  });
  const ada: Contact = must("create", created);
  const etag = created.response.headers.get("ETag");
  check("create answers 201 with Location and ETag", created.response.status === 201 && etag === `"${ada.version}"` &&
    created.response.headers.get("Location") === `/v1/contacts/${ada.id}`);
  const version: number = ada.version;
  const tags: string[] = ada.tags;
  const noteCount: number = ada.note_count;
  check("a new contact", ada.state === "active" && version === 1 && tags.length === 1 && noteCount === 0 && ada.spam === false);
  check("the new contact is listed", (await ids("active", ada.position)).includes(ada.id));

  const trashed = must("trash", await ledger.DELETE("/v1/contacts/{id}", {
    params: { path: { id: ada.id }, header: { "If-Match": `"${version}"` } },
    body: { reason: "duplicate" },
  }));
  check("trashed with its reason", trashed.state === "trashed" && trashed.trash_reason === "duplicate" && trashed.trashed_at !== undefined);
  check("in trash", (await ids("trash", trashed.position)).includes(ada.id));

  const restored = must("restore", await ledger.POST("/v1/contacts/{id}/restore", { params: { path: { id: ada.id } }, body: {} }));
  check("restored as it was", restored.state === "active" && restored.created_at === ada.created_at && restored.version === 3);
  check("back in the active view", (await ids("active", restored.position)).includes(ada.id));

  const stale = await ledger.POST("/v1/contacts/{id}/archive", { params: { path: { id: ada.id }, header: { "If-Match": '"1"' } } });
  check("a stale If-Match is a 412 problem", stale.response.status === 412 && stale.error?.code === "concurrent-modification");

  const imported = must("import", await ledger.POST("/v1/contacts/import", {
    params: { query: { source: "ts-client" } },
    body: [
      { name: "Imp One", email: "imp.one@example.com", tags: ["a", "b"] },
      { name: "Imp Two", email: "imp.two@example.com", tags: "c; d", external_id: "T-2" },
      { name: "Imp Bad", email: "not-an-email" },
    ],
  }));
  check("import results", imported.totals.created === 2 && imported.totals.skipped === 1 && imported.results.length === 3 &&
    imported.results[2]?.result === "skipped" && imported.error === undefined);

  const history = must("history", await ledger.GET("/v1/contacts/{id}/history", { params: { path: { id: ada.id } } }));
  const kinds = history.events.map((e) => e.type);
  check("the history", kinds.join(",") === "ContactCreated,ContactTrashed,ContactRestored");
  for (const e of history.events) {
    if (e.type === "ContactTrashed") {
      // The reason is free text, so personal: sealed, and shown while the key exists.
      check("a trash event says where from, and why", e.data.from === "active" && e.personal?.reason === "duplicate");
    }
  }

  const audit = await ledger.GET("/v1/audit/events", { params: { query: { contact: ada.id } }, parseAs: "text" });
  const lines = must("audit export", audit).split("\n").filter((l) => l !== "");
  const events = lines.map((l) => JSON.parse(l) as AuditEvent);
  const created0 = events[0];
  check("the audit export", events.length === 3 && created0 !== undefined && created0.type === "ContactCreated" &&
    typeof created0.sealed === "string" && created0.hash.length > 0);

  console.log(`ok: ${ada.id} created, listed, trashed, restored; ${imported.totals.created} imported; ${events.length} audit lines`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
