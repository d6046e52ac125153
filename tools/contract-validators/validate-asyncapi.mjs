// Parses AsyncAPI documents with @asyncapi/parser (its schema and semantic rules) and prints
// every error per document: "ok <path>: …" or "invalid <path>"; exits 1 if any is invalid.
import { Parser, fromFile } from "@asyncapi/parser";

const parser = new Parser();
let invalid = 0;
for (const path of process.argv.slice(2)) {
  const { document, diagnostics } = await fromFile(parser, path).parse();
  // severity 0 = error (1 warning, 2 information, 3 hint)
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of errors) console.log(`error ${path} ${d.code} ${d.path.join(".")}: ${d.message}`);
  if (!document || errors.length) {
    invalid += 1;
    console.log(`invalid ${path}`);
  } else {
    console.log(`ok ${path}: ${document.channels().length} channels, ${document.allMessages().length} messages`);
  }
}
process.exit(invalid ? 1 : 0);
