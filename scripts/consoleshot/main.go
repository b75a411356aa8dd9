// Command consoleshot makes the README's screenshot of the operations
// console (docs/console.png): it opens a running gateway's console in
// headless Chromium, lets it fill for a while, and saves the page.
//
//	bin/wsgate dev &                                   # the cluster to show
//	bin/wsgate bench --addr 127.0.0.1:8080 --scenario echo --rate 2 --conns 300 --duration 5m &
//	go run ./scripts/consoleshot --url http://127.0.0.1:8081/ --wait 3m --out docs/console.png
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8081/", "the console's URL")
	wait := flag.Duration("wait", 2*time.Minute, "how long the page fills before the screenshot")
	out := flag.String("out", "docs/console.png", "PNG file to write")
	flag.Parse()
	if err := shot(*url, *wait, *out); err != nil {
		fmt.Fprintln(os.Stderr, "consoleshot:", err)
		os.Exit(1)
	}
}

func shot(url string, wait time.Duration, out string) error {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 1500))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, wait+time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return err
	}
	time.Sleep(wait) // the page fills with live data: nothing to wait for but time
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(out, png, 0o644)
}
