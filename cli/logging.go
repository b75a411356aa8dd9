package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// newLogger is the one slog logger of a process, in text or JSON. In JSON,
// durations are seconds (a number), as log pipelines expect; in text they
// read as Go prints them (1.5s). The Redis and RabbitMQ clients' own
// loggers are routed into it, so a process writes one format.
func newLogger(w io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if json {
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				return slog.Float64(a.Key, a.Value.Duration().Seconds())
			}
			return a
		}
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	log := slog.New(h)
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	amqp.SetLogger(amqpLogger{log.With("component", "rabbitmq")})
	return log
}

// redisLogger carries go-redis's messages (pool and reconnect trouble) as
// warnings.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// amqpLogger carries amqp091-go's messages as warnings.
type amqpLogger struct{ log *slog.Logger }

func (l amqpLogger) Printf(format string, v ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
