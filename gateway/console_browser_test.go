package gateway_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wsgate/wsgate/gateway"
)

// chromiumPath finds Debian's chromium (scripts/services.sh installs it).
// A missing browser fails the test: it is part of `make test`.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run scripts/services.sh (it installs Debian's chromium)")
	return ""
}

// browser starts headless Chromium and returns a context that drives one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 1800),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// waitJS polls a JavaScript boolean expression in the page until it is
// true, failing with what describe (another expression) says at the
// deadline.
func waitJS(t *testing.T, ctx context.Context, what, cond, describe string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](describe))
			t.Fatalf("%s: not true after 30s: %s (page: %s)", what, cond, got)
		}
		time.Sleep(100 * time.Millisecond) // polling the page, not waiting for a fixed time
	}
}

func text(id string) string { return `document.getElementById(` + strconv.Quote(id) + `).textContent` }

// TestConsoleInBrowser drives the operations console in real headless
// Chromium against a dev cluster on free ports: the live stream, the nodes,
// test clients landing, a node added from the page and clients moving to
// it (on the chart and in the event log), a user looked up, a message
// sent and a broadcast received.
func TestConsoleInBrowser(t *testing.T) {
	c := startCluster(t, 2, func(cfg *gateway.Config) { cfg.AllowedOrigins = []string{"*"} })
	ctx := browser(t)
	url := "http://" + c.Gateway().AdminAddr() + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "live stream", text("live")+` === "live"`, text("summary"))
	waitJS(t, ctx, "two nodes listed", `document.querySelectorAll("#nodes tr").length === 2`, `document.getElementById("nodes").innerText`)

	// 30 test clients from the page land on the two nodes.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#clients input[name=n]`), "30"),
		chromedp.Click(chromedp.CSS(`#clients button`)),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "30 clients open", text("client-summary")+`.startsWith("30 open") && !`+text("client-summary")+`.includes("connecting")`, text("client-summary"))
	waitJS(t, ctx, "the connections chart shows them",
		`(() => { const s = document.querySelector("#c-conns h3 span").textContent; return /node-1 \d+/.test(s) && /node-2 \d+/.test(s) && document.querySelectorAll("#c-conns polyline").length === 2; })()`,
		`document.querySelector("#c-conns h3 span").textContent`)

	// Add a node from the page: it joins, the moved clients reconnect to
	// it, and the event log tells the rebalance.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("add-node"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "three nodes listed", `document.querySelectorAll("#nodes tr").length === 3`, `document.getElementById("nodes").innerText`)
	waitJS(t, ctx, "clients moved to the new node", text("client-summary")+`.includes("node-3:") && `+text("client-summary")+`.startsWith("30 open")`, text("client-summary"))
	waitJS(t, ctx, "join and rebalance in the event log",
		text("events")+`.includes("node node-3 is on the ring") && /rebalance to ring [0-9a-f]+ done: [1-9]\d* clients moved/.test(`+text("events")+`)`, text("events"))
	waitJS(t, ctx, "the chart has node-3", `document.querySelectorAll("#c-conns polyline").length === 3`, `document.querySelector("#c-conns .legend").textContent`)

	// Look up a user, send to it, broadcast.
	const user = "user-0" // the first test client's key
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#lookup input[name=user]`), user),
		chromedp.Click(chromedp.CSS(`#lookup button`)),
	); err != nil {
		t.Fatal(err)
	}
	owner := owner(t, c, user)
	waitJS(t, ctx, "user lookup", text("where")+`.includes("ring owner: `+owner+`")`, text("where"))
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#send input[name=userId]`), user),
		chromedp.SetValue(chromedp.CSS(`#send input[name=message]`), "hello from the console"),
		chromedp.Click(chromedp.CSS(`#send button`)),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the user's test client got the message", text("log")+`.includes("`+user+` (`+owner+`) got: hello from the console")`, text("log"))
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#broadcast input[name=message]`), "to everyone"),
		chromedp.Click(chromedp.CSS(`#broadcast button`)),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "every test client got the broadcast", `(`+text("log")+`.match(/got: to everyone/g) || []).length === 30`, text("log"))
	waitJS(t, ctx, "the messages chart moved", `/backend → client [1-9]/.test(document.querySelector("#c-msgs h3 span").textContent) || document.querySelector("#c-msgs").dataset.points > 0`, `document.querySelector("#c-msgs h3 span").textContent`)

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "console.png")
	if out := os.Getenv("WSGATE_CONSOLE_SCREENSHOT"); out != "" {
		shot = out // docs/console.png is made this way
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if len(png) < 10_000 || !strings.HasPrefix(string(png[:8]), "\x89PNG") {
		t.Errorf("screenshot is %d bytes, not a page", len(png))
	}
}
