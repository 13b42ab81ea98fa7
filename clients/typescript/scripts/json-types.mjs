// TypeScript declarations of the JSON columns, from the JSON Schemas in clients/json-schema
// (one Node process for all of them: json2ts would start one per file).
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";

import { compileFromFile } from "json-schema-to-typescript";

const from = "../json-schema";
const to = "src/generated/json";
mkdirSync(to, { recursive: true });
for (const file of readdirSync(from).filter((name) => name.endsWith(".schema.json"))) {
  const declarations = await compileFromFile(`${from}/${file}`, {
    cwd: from,
    bannerComment: "// Generated from clients/json-schema by json-schema-to-typescript; do not edit.",
  });
  writeFileSync(`${to}/${file.replace(".schema.json", ".d.ts")}`, declarations);
}
