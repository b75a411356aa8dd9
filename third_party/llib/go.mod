module github.com/lesismal/llib

go 1.22

require (
	golang.org/x/crypto v0.45.0
	golang.org/x/sys v0.38.0
)
