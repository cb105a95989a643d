module github.com/go-defender/defender

go 1.25
