// Prisma's configuration for pledgeflow's tables. Alembic owns them (see schema.prisma): every
// table and enum is external, so `prisma migrate diff` of this schema against a database at
// Alembic head is empty, and Prisma Migrate never creates, alters or drops them (nor
// `alembic_version`, which has no model). tests/test_prisma_schema.py checks both lists.
//
// Only `prisma generate` is needed to use the client; it needs no database and no native engine
// (Prisma Client 7 runs on the WASM query compiler with @prisma/adapter-pg). The CLI still looks
// for its schema engine: where it cannot download it, set PRISMA_SCHEMA_ENGINE_BINARY to any
// existing file (generate never runs it). Commands that do run it (migrate diff, db pull) need
// the real engine and DATABASE_URL.
import type { PrismaConfig } from "prisma";

const url = process.env.DATABASE_URL;

export default {
  schema: "schema.prisma",
  experimental: { externalTables: true },
  ...(url ? { datasource: { url } } : {}),
  tables: {
    external: [
      "public.project",
      "public.csv_upload",
      "public.csv_upload_chunk",
      "public.backer",
      "public.product",
      "public.pledge",
      "public.survey",
      "public.inventory",
      "public.alembic_version",
    ],
  },
  enums: {
    external: ["public.product_kind", "public.upload_status"],
  },
} satisfies PrismaConfig;
