package store

func killChild(dir string) {}
