// What tests/test_web_app_client.py runs with Node: a web app's whole loop against a real
// database and webhook. Reads a CSV export, stores it through Prisma, calls the webhook, waits
// for the upload, and prints (as one JSON document) what it read back through Prisma.
import { readFileSync } from "node:fs";

import { parse } from "csv-parse/sync";

import { ProductKind } from "./generated/prisma/client.js";
import {
  connect,
  jsonSafe,
  notifyUpload,
  readProgress,
  readPledges,
  storeUpload,
  sumMoney,
  waitForUpload,
} from "./pledgeflow.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
}

async function main(): Promise<void> {
  const prisma = connect(required("DATABASE_URL"));
  try {
    const [headers, ...rows] = parse(readFileSync(required("CSV_PATH")), {
      bom: true,
      relax_column_count: true,
    }) as string[][];
    if (!headers) throw new Error("the CSV has no header row");
    const shop = required("SHOP");
    const uploadId = await storeUpload(prisma, {
      shop,
      project: required("PROJECT"),
      filename: "export.csv",
      headers,
      rows,
      chunkSize: Number(process.env.CHUNK_SIZE ?? "10000"),
    });
    const stored = await readProgress(prisma, uploadId);
    const webhook = required("WEBHOOK_URL");
    const secret = required("WEBHOOK_SECRET");
    const queued = await notifyUpload(webhook, secret, uploadId, { shop });
    // A redelivery, naming the id as a BigInt this time: the same run.
    const again = await notifyUpload(webhook, secret, BigInt(uploadId));
    const progress = await waitForUpload(prisma, uploadId, { timeoutMs: 240_000, intervalMs: 500 });

    const pledges = await readPledges(prisma, uploadId, 1_000);
    const rewarded = await prisma.pledge.count({
      where: { uploadId: BigInt(uploadId), product: { kind: ProductKind.REWARD } },
    });
    const chunks = await prisma.csvUploadChunk.findMany({
      where: { uploadId: BigInt(uploadId) },
      orderBy: { chunkIndex: "asc" },
      select: { chunkIndex: true, status: true, rowCount: true, firstRow: true, updatedAt: true },
    });
    const totals = await prisma.pledge.findMany({
      where: { uploadId: BigInt(uploadId) },
      select: { amount: true },
    });
    // Plain JSON.stringify of what the client read: ids are strings, money and dates toJSON.
    process.stdout.write(
      JSON.stringify({
        uploadId,
        stored,
        queued,
        again,
        progress,
        pledges,
        rewarded,
        chunks: jsonSafe(chunks),
        totalPledged: sumMoney(totals.map((p) => p.amount)),
      }) + "\n",
    );
  } finally {
    await prisma.$disconnect();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
