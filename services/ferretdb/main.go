// Command ferretdb runs FerretDB (MongoDB wire protocol) with the SQLite
// backend on loopback, for the integration tests of AM-QADF Live.
//
// Usage: ferretdb -listen 127.0.0.1:27017 -data services/.state/mongo/data [-log-level warn]
//
// The embeddable package disables telemetry itself; logs go to stderr.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", envOr("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"), "TCP address to listen on")
	dataDir := flag.String("data", envOr("FERRETDB_DATA_DIR", "data"), "directory for the SQLite databases")
	logLevel := flag.String("log-level", "info", "FerretDB's log level: debug, info, warn or error")
	flag.Parse()

	// Our own start/stop lines always show; FerretDB's logger (one line per
	// client connection at info) follows -log-level.
	lifecycle := slog.New(slog.NewTextHandler(os.Stderr, nil))

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		lifecycle.Error("bad -log-level", "value", *logLevel, "error", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	dir, err := filepath.Abs(*dataDir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		lifecycle.Error("cannot prepare data directory", "dir", *dataDir, "error", err)
		os.Exit(1)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
		Handler:  "sqlite",
		// The SQLite backend wants a "file:" URI naming an existing directory,
		// ending with a slash; each MongoDB database becomes one file in it.
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		lifecycle.Error("cannot start FerretDB", "error", err)
		os.Exit(1)
	}

	// Run returns once the context is cancelled and open connections are
	// closed, so SIGTERM/SIGINT give a clean shutdown of the SQLite files.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	lifecycle.Info("FerretDB listening", "uri", f.MongoDBURI(), "data", dir)
	if err := f.Run(ctx); err != nil {
		lifecycle.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
	lifecycle.Info("FerretDB stopped")
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
