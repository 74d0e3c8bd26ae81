"""`python -m resnet`: build every registered model and print its size and cost."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="python -m resnet")
