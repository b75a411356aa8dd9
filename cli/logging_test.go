package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoggerFormats(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, slog.LevelInfo, true)
	log.Info("rebalance done", "duration", 1500*time.Millisecond)
	redisLogger{log.With("component", "redis")}.Printf(context.Background(), "redis: connection pool: %s\n", "failed to dial")
	log.Debug("hidden at info")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (debug hidden): %q", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["duration"] != 1.5 {
		t.Errorf("JSON duration: %v (%v), want 1.5 seconds", first["duration"], err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil || second["component"] != "redis" || second["msg"] != "redis: connection pool: failed to dial" {
		t.Errorf("go-redis line: %v (%v)", second, err)
	}
	buf.Reset()
	newLogger(&buf, slog.LevelInfo, false).Info("x", "duration", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), "duration=1.5s") {
		t.Errorf("text duration: %q", buf.String())
	}
}
